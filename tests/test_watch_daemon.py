"""`watch` through the daemon: subscribers of one config share one watcher and one evaluation
per change, get the diffs `evix watch --no-daemon` prints, and the last one to leave stops it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import Daemon, config_for, daemon_fixture, short_dir

from evix_helpers import run_evix, wait_until
from nix_helpers import derivation_nix
from protocol import rpc
from watch_helpers import Watching


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    yield from daemon_fixture()


def inotify_fds(pid: int) -> int:
    """inotify instances the process holds: one per running watcher."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:
            continue
    return count


def jobs(name: str) -> str:
    return "{ a = %s; b = %s; }" % (derivation_nix(name), derivation_nix("b"))


def test_subscribers_share_one_watcher_and_get_what_the_cli_prints(daemon: Daemon) -> None:
    d = short_dir()
    f = d / "jobs.nix"
    f.write_text(jobs("a-1"))
    with Watching("--no-daemon", "--file", "jobs.nix", cwd=d) as local, \
            Watching("--file", "jobs.nix", cwd=d, socket_path=daemon.socket) as one:
        one.wait_events({"a", "b"})
        local.wait_events({"a", "b"})
        assert one.events == local.events  # as `evix eval` prints them
        with Watching("--file", "jobs.nix", cwd=d, socket_path=daemon.socket) as two:
            two.wait_events({"a", "b"})  # from the warm graph: no second evaluation
            assert inotify_fds(daemon.proc.pid) == 1
            f.write_text(jobs("a-2"))
            (mine,) = one.wait_diffs(1)
            assert two.wait_diffs(1) == [mine] == local.wait_diffs(1)
            assert [c["name"] for c in mine["changed"]] == ["a-2"]
            (session,) = [s for s in daemon.call("sessions") if s["input"] == f"--file {f}"]
            assert session["evaluations"] == 2  # the first and one for the change, shared by both
            query = run_evix("query", "--file", "jobs.nix", cwd=d, socket_path=daemon.socket)
            assert [e["name"] for e in query.events if e["attr"] == "a"] == ["a-2"]  # the latest state
        assert two.proc.returncode == 130
    assert one.proc.returncode == 130
    wait_until(lambda: inotify_fds(daemon.proc.pid) == 0, "the watcher to stop with its last subscriber")


def test_a_disconnect_unsubscribes_and_stops_the_watcher(daemon: Daemon) -> None:
    d = short_dir()
    f = d / "jobs.nix"
    f.write_text(jobs("a-1"))
    with daemon.raw() as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 7, "method": "watch", "params": {"config": config_for(f)}})
        first = conn.read()
        assert first["method"] == rpc.EVENTS_METHOD and first["params"]["id"] == 7
        assert inotify_fds(daemon.proc.pid) == 1
        f.write_text(jobs("a-2"))
        while (msg := conn.read())["method"] != rpc.WATCH_DIFF_METHOD:
            assert msg["method"] == rpc.EVENTS_METHOD
        params = msg["params"]
        assert params["id"] == 7 and params["summary"]["derivations"] == 2 and params["session"]
        assert [c["name"] for c in params["diff"]["changed"]] == ["a-2"]
    wait_until(lambda: inotify_fds(daemon.proc.pid) == 0, "the watcher to stop after the disconnect")
    assert "nobody watches" in daemon.log


def test_what_cannot_be_watched_is_refused(daemon: Daemon) -> None:
    with daemon.raw() as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "watch",
                        "params": {"config": {"expr": "{}", "baseDir": "/"}}})
        error = conn.read_response()["error"]
    assert error["code"] == rpc.InvalidParamsError.CODE and "--expr cannot be watched" in error["message"]
