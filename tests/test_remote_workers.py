"""Remote workers against real `evix worker --listen` services on loopback: the same events as
local workers, system routing between two remotes, and the fatal no-owner case."""

from __future__ import annotations

from pathlib import Path

import pytest

from evix_helpers import FIXTURES, eval_locally, nix_drv_paths, run_evix, wait_until
from remote_helpers import listen_args, remote_env, services

JOBS = FIXTURES / "jobs.nix"

TWO_SYSTEMS = """
let
  mk = system: name: derivation { inherit name system; builder = "/bin/sh"; };
  set = system: { recurseForDerivations = true; } // builtins.listToAttrs (map (i: {
    name = "p${toString i}"; value = mk system "p${toString i}-${system}"; }) (builtins.genList (x: x) 60));
in {
  packages = { recurseForDerivations = true; x86_64-linux = set "x86_64-linux"; aarch64-linux = set "aarch64-linux"; };
  mixed = { recurseForDerivations = true; a = mk "x86_64-linux" "a"; b = mk "aarch64-linux" "b"; };
}
"""


@pytest.fixture(scope="module")
def local_jobs():
    run = eval_locally("--file", str(JOBS), "--workers", "2")
    assert run.code == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def any_system_services():
    with services(listen_args(), listen_args()) as started:
        yield started


def test_remote_only_gives_the_local_events(local_jobs, any_system_services):
    a, b = any_system_services
    run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", a.endpoint, "", "2", env=remote_env())
    assert run.code == 0, run.stderr
    assert run.canonical() == local_jobs.canonical()
    truth = nix_drv_paths(f"import {JOBS} {{}}", [["base"], ["scope", "deeper", "leaf"]])
    assert run.derivations()["scope.deeper.leaf"]["drvPath"] == truth["scope.deeper.leaf"]
    assert "serving" in a.log


def test_mixed_local_and_remotes_give_the_local_events(local_jobs, any_system_services):
    a, b = any_system_services
    run = eval_locally("--file", str(JOBS), "--workers", "1", "--remote", a.endpoint, "", "1",
                       "--remote", b.endpoint, "", "1", env=remote_env())
    assert run.code == 0, run.stderr
    assert run.canonical() == local_jobs.canonical()


def test_each_system_goes_to_the_remote_that_owns_it(tmp_path: Path):
    source = tmp_path / "two.nix"
    source.write_text(TWO_SYSTEMS)
    local = eval_locally("--file", str(source))
    assert local.code == 0, local.stderr
    with services(listen_args(), listen_args()) as (x86, arm):
        run = eval_locally("--file", str(source), "--workers", "0", "--remote", x86.endpoint, "x86_64-linux", "1",
                           "--remote", arm.endpoint, "aarch64-linux", "1", "-vv", env=remote_env())
    assert run.code == 0, run.stderr
    assert run.canonical() == local.canonical()
    systems = {e["system"] for e in run.derivations().values()}
    assert systems == {"x86_64-linux", "aarch64-linux"}
    assert len(run.derivations()) == 122
    # routed up front once a set's first derivations came back: only a few probes go astray
    rejected = run.stderr.count(" rejects ")
    assert rejected < 30, rejected


def test_a_system_no_worker_owns_is_fatal(tmp_path: Path):
    source = tmp_path / "two.nix"
    source.write_text(TWO_SYSTEMS)
    with services(listen_args()) as (x86,):
        run = eval_locally("--file", str(source), "--workers", "0", "--remote", x86.endpoint, "x86_64-linux", "1",
                           env=remote_env())
    assert run.code == 1
    assert "no worker accepted derivation at " in run.stderr
    assert "for system aarch64-linux" in run.stderr
    assert all(e["system"] == "x86_64-linux" for e in run.derivations().values())


def test_a_wrong_token_is_refused_and_the_service_serves_on(any_system_services, local_jobs):
    a, _ = any_system_services
    run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", a.endpoint, "", "1",
                       env=remote_env("not-the-token"))
    assert run.code == 1
    assert "authentication failed" in run.stderr
    assert "refused: remote worker authentication failed" in a.log
    good = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", a.endpoint, "", "1", env=remote_env())
    assert good.code == 0 and good.canonical() == local_jobs.canonical()


def test_a_forbidden_nix_option_is_refused(any_system_services):
    a, _ = any_system_services
    run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", a.endpoint, "", "1",
                       "--option", "allow-unsafe-native-code-during-evaluation", "true", env=remote_env())
    assert run.code == 1
    assert "allow-unsafe-native-code-during-evaluation' is not accepted from a master" in run.stderr


def test_an_unreachable_remote_fails_naming_it(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", f"127.0.0.1:{port}", "", "1",
                       env=remote_env())
    assert run.code == 1
    assert f"no worker left to evaluate on: remote worker 127.0.0.1:{port} unreachable" in run.stderr


def test_remotes_are_part_of_a_daemon_sessions_config_not_its_key(local_jobs, any_system_services):
    from daemon_fixtures import short_dir, start_daemon

    a, _ = any_system_services
    work = short_dir()
    daemon = start_daemon(work / "evix.sock")
    served = a.log.count("serving")
    try:
        through_daemon = run_evix("eval", "--file", str(JOBS), "--workers", "0", "--remote", a.endpoint, "", "2",
                                  socket_path=daemon.socket, env=remote_env())
        assert through_daemon.code == 0, through_daemon.stderr + daemon.log
        assert through_daemon.canonical() == local_jobs.canonical()
        wait_until(lambda: a.log.count("serving") > served, "the daemon's run to be served by the remote")
        # the same session without --remote: found by key, remotes are how, not what
        query = run_evix("query", "--file", str(JOBS), socket_path=daemon.socket)
        assert query.code == 0, query.stderr
        assert {e["drvPath"] for e in query.events} == {e["drvPath"] for e in local_jobs.derivations().values()}
    finally:
        daemon.stop()


def test_ipv6_and_the_connection_cap(local_jobs):
    args = ["--listen", "[::1]:0", "-v", "--token", "v6-token", "--max-connections", "1"]
    with services(args) as (service,):
        assert service.endpoint.startswith("[::1]:")
        run = eval_locally("--file", str(JOBS), "--workers", "0", "--remote", service.endpoint, "", "2",
                           env=remote_env("v6-token"))
        wait_until(lambda: "connection limit of 1 reached" in service.log, "the second connection to be turned away")
    assert run.code == 0, run.stderr
    assert run.canonical() == local_jobs.canonical()
