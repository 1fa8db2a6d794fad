"""Warm sessions: keys, warm workers, the count and memory bounds, sessions/drop/status."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import Daemon, config_for, eval_lines, short_dir, start_daemon, write_jobs, write_many

from evix_helpers import wait_until
from protocol import rpc


@pytest.fixture
def work() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _stopped(daemon: Daemon) -> None:
    assert daemon.stop() == 0, daemon.log
    assert "Traceback" not in daemon.log, daemon.log


def test_a_repeated_eval_uses_the_warm_workers(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock", "--warm-seconds", "60")
    try:
        config = config_for(write_jobs(work / "jobs.nix"), workers=2)
        # a run spawns one process, its template, and forks its 2 workers from it; then
        # one process is kept warm to be the next run's template
        eval_lines(daemon, config)
        wait_until(lambda: daemon.call("status")["workers"]["warm"] == 1, "a warm process")
        assert daemon.call("status")["workers"]["spawned"] == 2
        _, summary = eval_lines(daemon, config)
        assert summary["derivations"] == 7
        wait_until(lambda: daemon.call("status")["workers"]["warm"] == 1, "the pool to refill")
        # the second run took the warm one: only the refill was spawned (cold would be 4)
        assert daemon.call("status")["workers"]["spawned"] == 3
        diff = daemon.call("diff", {"config": config})
        assert diff["summary"]["derivations"] == 7
        wait_until(lambda: daemon.call("status")["workers"]["warm"] == 1, "the pool to refill")
        assert daemon.call("status")["workers"]["spawned"] == 4
    finally:
        _stopped(daemon)


def test_warm_workers_stop_after_the_idle_time(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock", "--warm-seconds", "1")
    try:
        eval_lines(daemon, config_for(write_jobs(work / "jobs.nix")))
        proc = psutil.Process(daemon.proc.pid)
        wait_until(lambda: daemon.call("status")["workers"]["warm"] == 1, "a warm worker")
        wait_until(lambda: daemon.call("status")["workers"]["warm"] == 0, "the warm worker to stop")
        wait_until(lambda: not proc.children(recursive=True), "worker processes to exit")
        assert daemon.call("sessions")[0]["derivations"] == 7  # the graph stays; only workers went
    finally:
        _stopped(daemon)


def test_the_least_recently_used_session_goes_past_the_count(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock", "--max-sessions", "2", "--max-warm-workers", "0")
    try:
        a, b, c = (config_for(write_many(work / f"{n}.nix", 20, salt=n)) for n in "abc")
        eval_lines(daemon, a)
        eval_lines(daemon, b)
        assert daemon.call("query", {"config": a})["count"] == 20  # a is now more recent than b
        eval_lines(daemon, c)
        kept = {s["input"].rsplit("/", 1)[1] for s in daemon.call("sessions")}
        assert kept == {"a.nix", "c.nix"}
        with pytest.raises(rpc.NoSessionError):
            daemon.call("query", {"config": b})
    finally:
        _stopped(daemon)


def test_sessions_are_evicted_past_the_memory_bound(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock", "--max-session-memory", "2", "--max-warm-workers", "0")
    try:
        first = config_for(write_many(work / "first.nix", 1000, salt="1"))
        eval_lines(daemon, first)
        one = daemon.call("sessions")[0]["memoryBytes"]
        assert 1 << 20 < one < 2 << 20  # ~1 KiB per derivation: fits alone, not twice
        eval_lines(daemon, config_for(write_many(work / "second.nix", 1000, salt="2")))
        sessions = daemon.call("sessions")
        assert [s["input"].rsplit("/", 1)[1] for s in sessions] == ["second.nix"]
        assert daemon.call("status")["sessionMemoryBytes"] == sessions[0]["memoryBytes"]
    finally:
        _stopped(daemon)


def test_sessions_drop_and_status(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock", "--max-warm-workers", "0")
    try:
        status = daemon.call("status")
        assert status["sessions"] == 0 and status["uptimeSeconds"] >= 0 and status["memory"]["daemonRss"] > 0
        config = config_for(write_jobs(work / "jobs.nix"))
        _, summary = eval_lines(daemon, config)
        [session] = daemon.call("sessions")
        assert session["key"] == summary["session"] and session["derivations"] == 7 and session["errors"] == 1
        assert session["input"] == f"--file {work / 'jobs.nix'}" and session["busy"] is False
        status = daemon.call("status")
        assert status["sessions"] == 1 and status["sessionMemoryBytes"] == session["memoryBytes"] > 0
        assert isinstance(status["version"], str) and status["workers"]["spawned"] >= 1
        with pytest.raises(rpc.NoSessionError):
            daemon.call("drop", {"key": "f" * 64})
        assert daemon.call("drop", {"key": session["key"][:10]}) == {"dropped": session["key"]}
        assert daemon.call("sessions") == []
        with pytest.raises(rpc.NoSessionError):
            daemon.call("query", {"config": config})
    finally:
        _stopped(daemon)


def test_the_session_key_ignores_how_but_not_what(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock", "--max-warm-workers", "0")
    try:
        nix = write_jobs(work / "jobs.nix")
        config = config_for(nix, workers=2)
        eval_lines(daemon, config)
        same = dict(config, workers=1, maxMemoryMb=512, itemTimeout=9.0)
        assert daemon.call("query", {"config": same})["count"] == 7
        for different in (dict(config, meta=True), dict(config, forceRecurse=True),
                          dict(config, args=[{"name": "system", "value": "aarch64-linux", "isString": True}])):
            with pytest.raises(rpc.NoSessionError):
                daemon.call("query", {"config": different})
    finally:
        _stopped(daemon)
