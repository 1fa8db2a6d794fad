"""`evix daemon` in the background: readiness, the pid file, `evix daemon status|stop`, and
systemd's notifications, with real daemon processes on temporary sockets."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest
from daemon_fixtures import config_for, derivation_lines, short_dir, write_jobs
from evix_helpers import command, evix_env, run_evix

from evix_client.daemon_client import DaemonClient

NOT_RUNNING = 3


@pytest.fixture
def work() -> Iterator[Path]:
    """A short temporary directory; every daemon whose command line names it is stopped after."""
    d = short_dir()
    yield d
    leftover = daemons_in(d)
    for p in leftover:
        p.terminate()
    _, alive = psutil.wait_procs(leftover, timeout=20)
    for p in alive:
        p.kill()
    shutil.rmtree(d, ignore_errors=True)


def daemons_in(work: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `work` (the daemons started on its socket)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(str(work) in a for a in p.info["cmdline"] or ()):
            found.append(p)
    return found


def clean_env(work: Path, **extra: str) -> dict[str, str]:
    """The user's environment outside systemd, with the log under `work`."""
    e = evix_env(extra={"XDG_STATE_HOME": str(work / "state"), **extra})
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", *(() if "NOTIFY_SOCKET" in extra else ("NOTIFY_SOCKET",))):
        e.pop(name, None)
    return e


def evix(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # capture_output: if the daemon kept our stdout or stderr, this would hang until the timeout
    return subprocess.run([*command("evix"), *args], capture_output=True, text=True, env=clean_env(work), timeout=90)


def start(work: Path, sock: Path) -> int:
    """`evix daemon --socket sock`; returns the daemon's pid from its own `status`."""
    r = evix(work, "daemon", "--socket", str(sock))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{sock}\n"
    with DaemonClient.connect(str(sock)) as c:  # no retry: it answers once the command returned
        return c.call("status")["pid"]


def test_background_start_returns_once_the_socket_answers(work: Path) -> None:
    sock = work / "evix.sock"
    r = evix(work, "daemon", "--socket", str(sock))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{sock}\n"
    log_file = work / "state" / "evix" / "evixd.log"
    assert str(log_file) in r.stderr and "evix daemon stop" in r.stderr
    with DaemonClient.connect(str(sock)) as c:
        pid = c.call("status")["pid"]
    pid_file = Path(f"{sock}.pid")
    assert pid_file.read_text() == f"{pid}\n"
    assert stat.S_IMODE(pid_file.stat().st_mode) == 0o600
    daemon = psutil.Process(pid)
    assert daemon.status() != psutil.STATUS_ZOMBIE
    # Detached: in a session of its own that it does not lead, no terminal, stdio away, cwd /.
    assert os.getsid(pid) not in (os.getsid(0), pid)
    assert daemon.terminal() is None
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2") == str(log_file)
    assert daemon.cwd() == "/"
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert f"listening on {sock}" in log_file.read_text()
    assert evix(work, "daemon", "stop", "--socket", str(sock)).returncode == 0


SLOW_LISTEN = """\
import socket, time
_listen = socket.socket.listen
def listen(self, *args):
    time.sleep(1.0)  # bound but refusing connections meanwhile
    return _listen(self, *args)
socket.socket.listen = listen
"""


def slow_listen(work: Path) -> str:
    """A PYTHONPATH whose sitecustomize makes every Python process there listen a second late."""
    slow = work / "slow"
    slow.mkdir(exist_ok=True)
    (slow / "sitecustomize.py").write_text(SLOW_LISTEN)
    return str(slow)


def test_the_start_waits_for_the_socket_even_when_listening_is_slow(work: Path) -> None:
    sock = work / "evix.sock"
    r = subprocess.run([*command("evix"), "daemon", "--socket", str(sock)], capture_output=True, text=True,
                       env=clean_env(work, PYTHONPATH=slow_listen(work)), timeout=90)
    assert r.returncode == 0, r.stderr
    with DaemonClient.connect(str(sock)) as c:  # a start that returned before listen() would be refused here
        assert c.call("status")["socket"] == str(sock)


def test_stop_ends_the_daemon_and_its_workers_and_removes_socket_and_pid_file(work: Path) -> None:
    sock = work / "evix.sock"
    pid = start(work, sock)
    write_jobs(work / "jobs.nix")
    local = run_evix("eval", "--file", "jobs.nix", "--no-daemon", cwd=work)
    through = run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=sock)
    assert through.code == 0, through.stderr
    # The detached daemon (cwd /) evaluated relative to the client's directory, like a local run.
    assert derivation_lines(through.stdout.splitlines()) == derivation_lines(local.stdout.splitlines())
    status = orjson.loads(evix(work, "daemon", "status", "--socket", str(sock), "--json").stdout)
    assert status["sessions"] == 1
    workers = psutil.Process(pid).children(recursive=True)
    assert workers  # warm workers stay after the eval

    r = evix(work, "daemon", "stop", "--socket", str(sock))
    assert r.returncode == 0, r.stderr
    assert f"evixd (pid {pid}) on {sock} stopped" in r.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not sock.exists() and not Path(f"{sock}.pid").exists()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive

    again = evix(work, "daemon", "stop", "--socket", str(sock))
    assert again.returncode == 0 and "not running" in again.stdout


def test_status_says_running_or_not_with_systemctls_exit_codes(work: Path) -> None:
    sock = work / "evix.sock"
    none = evix(work, "daemon", "status", "--socket", str(sock))
    assert none.returncode == NOT_RUNNING and "evixd is not running" in none.stdout
    pid = start(work, sock)
    r = evix(work, "daemon", "status", "--socket", str(sock))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"evixd is running on {sock}\n")
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines()[1:])
    assert fields["pid"] == str(pid)
    assert fields["sessions"].startswith("0 ") and fields["workers"].startswith("0 warm")
    assert "protocol" in fields["version"] and fields["uptime"].endswith(" s")
    assert evix(work, "daemon", "stop", "--socket", str(sock)).returncode == 0
    after = evix(work, "daemon", "status", "--socket", str(sock))
    assert after.returncode == NOT_RUNNING and "evixd is not running" in after.stdout


def test_a_second_background_start_is_already_running_and_leaves_the_first_alone(work: Path) -> None:
    sock = work / "evix.sock"
    first = start(work, sock)
    second = evix(work, "daemon", "--socket", str(sock))
    assert second.returncode == 1
    assert "already running" in second.stderr and second.stdout == ""
    assert [p.pid for p in daemons_in(work)] == [first]  # the second one is gone already
    assert Path(f"{sock}.pid").read_text() == f"{first}\n"
    with DaemonClient.connect(str(sock)) as c:
        assert c.call("status")["pid"] == first


def test_a_bad_option_fails_fast_with_its_message_and_starts_nothing(work: Path) -> None:
    sock = work / "evix.sock"
    r = evix(work, "daemon", "--socket", str(sock), "--max-sessions", "0")
    assert r.returncode == 2
    assert "--max-sessions" in r.stderr and "at least 1" in r.stderr
    assert not sock.exists() and not daemons_in(work)
    assert not (work / "state").exists()  # it failed before even opening the log


def test_a_start_the_daemon_refuses_reports_its_message_and_leaves_nothing(work: Path) -> None:
    path = work / "evix.sock"
    path.write_text("precious")
    r = evix(work, "daemon", "--socket", str(path))
    assert r.returncode == 1
    assert "not a socket" in r.stderr and str(path) in r.stderr
    assert path.read_text() == "precious"
    assert not daemons_in(work) and not Path(f"{path}.pid").exists()


def test_a_stale_pid_file_is_replaced_and_its_process_never_touched(work: Path) -> None:
    sock = work / "evix.sock"
    pid_file = Path(f"{sock}.pid")
    with subprocess.Popen(["sleep", "120"]) as bystander:
        try:
            pid_file.write_text(f"{bystander.pid}\n")  # a reused pid: alive, but not a daemon
            status = evix(work, "daemon", "status", "--socket", str(sock))
            assert status.returncode == NOT_RUNNING and "stale" in status.stdout
            stop = evix(work, "daemon", "stop", "--socket", str(sock))
            assert stop.returncode == 0 and "not running" in stop.stdout
            assert bystander.poll() is None
            pid = start(work, sock)
            assert pid_file.read_text() == f"{pid}\n"
            assert bystander.poll() is None
        finally:
            bystander.kill()


def test_a_live_daemon_without_its_socket_blocks_a_start_and_stop_still_ends_it(work: Path) -> None:
    sock = work / "evix.sock"
    first = start(work, sock)
    sock.rename(work / "moved.sock")  # it still listens there, but not where clients look
    r = evix(work, "daemon", "--socket", str(sock))
    assert r.returncode == 1
    assert f"already running as pid {first}" in r.stderr
    assert not sock.exists()  # the refused daemon removed the socket it had bound
    assert Path(f"{sock}.pid").read_text() == f"{first}\n"
    status = evix(work, "daemon", "status", "--socket", str(sock))
    assert status.returncode == NOT_RUNNING and f"evixd pid {first}" in status.stdout
    stop = evix(work, "daemon", "stop", "--socket", str(sock))
    assert stop.returncode == 0, stop.stderr
    assert f"evixd (pid {first}, which did not answer on {sock}) stopped" in stop.stdout
    assert not daemons_in(work) and not Path(f"{sock}.pid").exists()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_under_systemd_it_stays_in_the_foreground_and_notifies(work: Path, abstract: bool) -> None:
    sock = work / "evix.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"evix-test-notify-{os.getpid()}-{work.name}"
        notify.bind("\0" + name)
        address = "@" + name
    else:
        notify.bind(str(work / "notify"))
        address = str(work / "notify")
    notify.settimeout(60)
    log_path = work / "daemon.log"
    with notify, open(log_path, "wb") as log:
        # No --foreground: NOTIFY_SOCKET alone must keep it attached (systemd watches this pid).
        proc = subprocess.Popen([*command("evixd"), "--socket", str(sock), "-v"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log,
                                env=clean_env(work, NOTIFY_SOCKET=address, PYTHONPATH=slow_listen(work)))
        try:
            ready = notify.recv(4096).decode().split("\n")
            assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready, log_path.read_text()
            with DaemonClient.connect(str(sock)) as c:  # listening already when READY=1 came (however slow)
                assert c.call("status")["pid"] == proc.pid
                if not abstract:  # the workers it starts never see NOTIFY_SOCKET
                    c.call("eval", {"config": config_for(write_jobs(work / "jobs.nix"))}, on_events=lambda _: None)
                    workers = psutil.Process(proc.pid).children(recursive=True)
                    assert workers
                    for worker in workers:
                        assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{worker.pid}/environ").read_bytes()
            proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in notify.recv(4096).decode().split("\n")
            assert proc.wait(30) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not sock.exists() and not Path(f"{sock}.pid").exists()
