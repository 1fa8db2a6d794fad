"""The `evix` command with and without a daemon: eval through the daemon prints what a
local run prints, falls back when there is no daemon, and query/diff say what is missing."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import Daemon, daemon_fixture, short_dir, start_daemon, write_jobs
from evix_helpers import run_evix, wait_until

from evix_client.daemon_client import DaemonClient
from protocol import rpc


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    yield from daemon_fixture("--max-warm-workers", "1")


@pytest.fixture
def work() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _lines(out: bytes) -> list[bytes]:
    return sorted(out.splitlines())


def _session_inputs(daemon: Daemon) -> set[str]:
    return {s["input"] for s in daemon.call("sessions")}


def test_eval_through_the_daemon_prints_exactly_the_local_output(daemon: Daemon, work: Path) -> None:
    nix = write_jobs(work / "jobs.nix")
    local = run_evix("eval", "--file", "jobs.nix", "--no-daemon", cwd=work, socket_path=daemon.socket)
    assert local.code == 0, local.stderr
    assert f"--file {nix}" not in _session_inputs(daemon)  # --no-daemon did not touch the daemon
    remote = run_evix("eval", "--file", "jobs.nix", "--workers", "2", "-v", cwd=work, socket_path=daemon.socket)
    assert remote.code == 0, remote.stderr
    assert "daemon session" in remote.stderr
    assert f"--file {nix}" in _session_inputs(daemon)  # it went through the daemon
    assert _lines(remote.stdout) == _lines(local.stdout) and len(remote.stdout.splitlines()) == 11
    assert remote.stdout.endswith(b"\n")


def test_query_prints_the_derivation_lines_without_repeating_workers(daemon: Daemon, work: Path) -> None:
    write_jobs(work / "jobs.nix")
    evaluated = run_evix("eval", "--file", "jobs.nix", "--workers", "2", cwd=work, socket_path=daemon.socket)
    drvs = [x for x in evaluated.stdout.splitlines() if b'"drvPath"' in x]
    everything = run_evix("query", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
    assert everything.code == 0, everything.stderr
    assert _lines(everything.stdout) == sorted(drvs)
    scoped = run_evix("query", "--file", "jobs.nix", "--attr-prefix", "pkgs", "--attr-glob", "*.?",
                      "--system", "x86_64-linux", cwd=work, socket_path=daemon.socket)
    assert [orjson.loads(x)["attr"] for x in scoped.stdout.splitlines()] == ["pkgs.a", "pkgs.b"]
    by_name = run_evix("query", "--file", "jobs.nix", "--name", "arm-1", "--name", "c-1",
                       cwd=work, socket_path=daemon.socket)
    assert [orjson.loads(x)["attr"] for x in by_name.stdout.splitlines()] == ["arm", "pkgsx.c"]
    drv = orjson.loads(next(x for x in drvs if b'"world"' in x))["drvPath"]
    by_drv = run_evix("query", "--file", "jobs.nix", "--drv-path", drv, cwd=work, socket_path=daemon.socket)
    assert [orjson.loads(x)["attr"] for x in by_drv.stdout.splitlines()] == ["world"]


def test_diff_prints_one_object_with_the_changes(daemon: Daemon, work: Path) -> None:
    nix = write_jobs(work / "jobs.nix")
    run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
    write_jobs(nix, hello="hello-2.0", extra='added = derivation { name = "added"; system = "x"; builder = "/b"; };')
    result = run_evix("diff", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
    assert result.code == 0, result.stderr
    [line] = result.stdout.splitlines()
    diff = orjson.loads(line)
    assert set(diff) == {"added", "removed", "changed", "errors"}
    assert [a["attr"] for a in diff["added"]] == ["added"] and diff["removed"] == []
    assert [c["attr"] for c in diff["changed"]] == ["hello"]


def test_query_and_diff_without_a_session_say_so(daemon: Daemon, work: Path) -> None:
    write_jobs(work / "fresh.nix")
    for cmd in ("query", "diff"):
        result = run_evix(cmd, "--file", "fresh.nix", cwd=work, socket_path=daemon.socket)
        assert result.code == 1
        assert "no warm session for --file" in result.stderr and "fresh.nix" in result.stderr
        assert result.stdout == b""


def test_query_and_diff_without_a_daemon_say_so(work: Path) -> None:
    write_jobs(work / "jobs.nix")
    missing = work / "none.sock"
    for cmd in ("query", "diff"):
        result = run_evix(cmd, "--file", "jobs.nix", cwd=work, socket_path=missing)
        assert result.code == 1
        assert f"no evix daemon is listening on {missing}" in result.stderr
        assert "start one with `evix daemon`" in result.stderr


def test_eval_falls_back_to_local_without_a_daemon(work: Path) -> None:
    write_jobs(work / "jobs.nix")
    reference = run_evix("eval", "--file", "jobs.nix", "--no-daemon", cwd=work)
    missing = run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=work / "none.sock")
    assert missing.code == 0, missing.stderr
    assert _lines(missing.stdout) == _lines(reference.stdout)
    stale_path = work / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(stale_path))
    stale.close()  # connection refused
    refused = run_evix("eval", "--file", "jobs.nix", "-v", cwd=work, socket_path=stale_path)
    assert refused.code == 0, refused.stderr
    assert "evaluating locally" in refused.stderr
    assert _lines(refused.stdout) == _lines(reference.stdout)
    via_option = run_evix("eval", "--file", "jobs.nix", "--socket", str(work / "nope.sock"), cwd=work)
    assert via_option.code == 0 and _lines(via_option.stdout) == _lines(reference.stdout)


def test_an_input_that_cannot_load_fails_the_same_way_through_the_daemon(daemon: Daemon, work: Path) -> None:
    (work / "bad.nix").write_text("{ not nix")
    local = run_evix("eval", "--file", "bad.nix", "--no-daemon", cwd=work)
    remote = run_evix("eval", "--file", "bad.nix", cwd=work, socket_path=daemon.socket)
    assert local.code == remote.code == 1
    error = [x for x in local.stderr.splitlines() if x.startswith("evix: error:")]
    assert error and error == [x for x in remote.stderr.splitlines() if x.startswith("evix: error:")]


def test_evix_query_imports_no_trio_cffi_or_capnp(daemon: Daemon, work: Path) -> None:
    write_jobs(work / "jobs.nix")
    run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
    # Python lists every module the process imports on stderr ("import time: ... | name").
    result = run_evix("query", "--file", "jobs.nix", "--attr-prefix", "pkgs", "-q", cwd=work,
                      socket_path=daemon.socket, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.stderr
    imported = {line.rsplit("|", 1)[1].strip()
                for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "evix_client.daemon_client" in imported  # the list is complete
    assert not {m.split(".")[0] for m in imported} & {"trio", "cffi", "_cffi_backend", "capnp", "nixffi", "evixd"}
    assert len(result.stdout.splitlines()) == 3  # it really answered the query


def test_eval_falls_back_to_local_when_the_daemon_refuses_the_connection(work: Path) -> None:
    write_jobs(work / "jobs.nix")
    daemon = start_daemon(work / "busy.sock", "--max-connections", "1")
    try:
        holder = _take_the_only_slot(daemon)
        with holder:
            result = run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
            reference = run_evix("eval", "--file", "jobs.nix", "--no-daemon", cwd=work)
            assert result.code == 0, result.stderr
            assert "refused the evaluation (too many connections" in result.stderr
            assert _lines(result.stdout) == _lines(reference.stdout)
            assert holder.call("sessions") == []  # it did not evaluate in the daemon
    finally:
        assert daemon.stop() == 0


def _take_the_only_slot(daemon: Daemon) -> DaemonClient:
    """A connection holding the daemon's one slot (once the start-up probe has freed it)."""

    def connected() -> DaemonClient | None:
        client = daemon.client()
        try:
            client.call("status")
            return client
        except rpc.TooManyConnectionsError:
            client.close()
            return None

    return wait_until(connected, "the daemon's only connection slot", timeout=10)
