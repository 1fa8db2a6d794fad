"""Workers never outlive their master: `timeout`, SIGTERM, SIGHUP and SIGKILL of a local
`evix eval`, SIGKILL of the daemon mid-eval, and a master that dies before its worker has
bound itself to it. Real processes throughout; every evaluator is found by a tag in its
environment, so one that was orphaned (re-parented) is found too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import work  # noqa: F401 (the `work` directory fixture)
from daemon_fixtures import start_daemon
from evix_helpers import command, evix_env
from evix_helpers import REPO
from process_watch import assert_none_left, new_tag, tagged, wait_for_evaluators, write_slow_jobs


def _start_local(slow: Path, tag: str, *extra: str) -> subprocess.Popen[bytes]:
    """A local eval of the slow jobs, returned once it is under way (its first line printed,
    every worker evaluating a batch)."""
    proc = subprocess.Popen([*command("evix"), "eval", "--no-daemon", "--file", str(slow), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tagged(tag, evix_env()))
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b'{"attr":"","attrPath":[]')
    wait_for_evaluators(tag, 2)
    time.sleep(0.5)  # the root's children are handed out: both workers are in a batch
    return proc


def test_timeout_stops_a_local_eval_and_leaves_no_worker(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    proc = subprocess.Popen(["timeout", "6", *command("evix"), "eval", "--no-daemon", "--file", str(slow),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=tagged(tag, evix_env()))
    try:
        wait_for_evaluators(tag, 2)  # both busy before `timeout` sends its SIGTERM
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 124, err  # what `timeout` reports when it had to stop the command
    assert b"SIGTERM: stopping" in err and b"Traceback" not in err
    assert_none_left(tag)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c_with_128_plus_the_signal(work: Path, sig: signal.Signals) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    proc = _start_local(slow, tag, "--workers", "2")
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert b"Traceback" not in err
    assert_none_left(tag, within=0.5)  # reaped before the master exited


def test_sigkill_of_a_local_eval_leaves_no_worker(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    proc = _start_local(slow, tag, "--workers", "2")
    try:
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    assert_none_left(tag)  # the kernel kills them (PR_SET_PDEATHSIG): nothing else could


def test_sigkill_of_the_daemon_mid_eval_leaves_no_worker(work: Path) -> None:
    slow, tag = write_slow_jobs(work), new_tag()
    daemon = start_daemon(work / "evix.sock", "--warm-seconds", "0", extra_env={"EVIX_TEST_RUN": tag})
    client = subprocess.Popen([*command("evix"), "eval", "--file", str(slow), "--workers", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=evix_env(daemon.socket))
    try:
        first = client.stdout.readline()  # the root's attrset: the evaluation is under way
        wait_for_evaluators(tag, 2)
        daemon.proc.kill()
        daemon.proc.wait(10)
        assert_none_left(tag)
        _, err = client.communicate(timeout=60)
    finally:
        client.kill()
    # It had printed the root's attrset: it cannot start over, and says to try again.
    assert first.startswith(b'{"attr":"","attrPath":[],"attrs":[')
    assert client.returncode == 75, err
    assert b"run the command again" in err and b"Traceback" not in err


def test_a_worker_whose_master_died_before_binding_to_it_ends_itself() -> None:
    # The race: the master dies between fork and prctl, so no parent-death signal will ever
    # come. The child sees that its parent is not the one that forked it, and kills itself.
    code = ("from protocol.lifetime import die_with_parent\n"
            "import os\n"
            "die_with_parent(os.getppid() + 100000)\n"
            "print('still alive')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert b"still alive" not in proc.stdout


def test_a_spawned_process_is_killed_when_its_master_exits_without_clean_up() -> None:
    # `sleep` neither reads its pipes nor exits on its own for ten minutes: only the
    # parent-death signal set at spawn can end it when the master vanishes.
    code = ("import os\n"
            "from evixd.worker_launch import spawn\n"
            "print(spawn(['sleep', '600']).process.pid, flush=True)\n"
            "os._exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 1.0
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"process {pid} outlived its master")
        time.sleep(0.02)
