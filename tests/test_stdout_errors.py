"""stdout that cannot take the output: `| head -1` ends the run quietly with 141 (the run
did not complete), `> /dev/full` with one line on stderr and 1; never a traceback, never a
worker left. Locally and through the daemon (whose evaluation then stops too)."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import work  # noqa: F401 (the `work` directory fixture)
from daemon_fixtures import Daemon, start_daemon
from evix_helpers import command, evix_env
from process_watch import assert_none_left, new_tag, tagged, write_slow_jobs


def _shell(pipeline: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs `pipeline` in bash; its status is evix's (first command's) exit status."""
    script = f"{pipeline}; exit ${{PIPESTATUS[0]}}"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=environ, timeout=120)


def _evix(*args: str) -> str:
    return shlex.join([*command("evix"), "eval", *args])


def _daemon(work: Path, tag: str) -> Daemon:
    return start_daemon(work / "evix.sock", "--warm-seconds", "0", extra_env={"EVIX_TEST_RUN": tag})


def test_a_closed_pipe_ends_a_local_run_quietly_with_141(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    run = _shell(f"{_evix('--no-daemon', '--file', str(slow), '--workers', '2')} | head -1", tagged(tag, evix_env()))
    assert run.returncode == 141, run.stderr
    assert run.stdout.startswith('{"attr":"","attrPath":[]') and run.stdout.count("\n") == 1
    assert run.stderr == ""
    assert_none_left(tag, within=0.5)


def test_a_full_disk_is_one_line_on_stderr_and_exit_1(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    run = _shell(f"{_evix('--no-daemon', '--file', str(slow), '--workers', '2')} >/dev/full", tagged(tag, evix_env()))
    assert run.returncode == 1, run.stderr
    assert run.stderr == "evix: error: cannot write to stdout: No space left on device\n"
    assert_none_left(tag, within=0.5)


def test_a_closed_pipe_through_the_daemon_exits_141_and_stops_its_evaluation(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    daemon = _daemon(work, tag)
    run = _shell(f"{_evix('--file', str(slow), '--workers', '2')} | head -1", evix_env(daemon.socket))
    assert run.returncode == 141, run.stderr
    assert run.stdout.startswith('{"attr":"","attrPath":[]') and run.stderr == ""
    assert "client gone" in daemon.log
    assert_none_left(tag)  # the client's going cancelled the evaluation at once
    deadline = time.monotonic() + 2
    while any(s["busy"] for s in daemon.call("sessions")):  # the cancelled run is winding down
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert daemon.stop() == 0


def test_a_full_disk_through_the_daemon_is_one_line_and_exit_1(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    daemon = _daemon(work, tag)
    run = _shell(f"{_evix('--file', str(slow), '--workers', '2')} >/dev/full", evix_env(daemon.socket))
    assert run.returncode == 1, run.stderr
    assert run.stderr == "evix: error: cannot write to stdout: No space left on device\n"
    assert_none_left(tag)
    assert daemon.stop() == 0
