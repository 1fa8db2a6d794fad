"""Starting the daemon in the background, and telling the user's command how that went.

The user's process forks; the child starts a new session (leaving the terminal) and forks
again, so the daemon, the grandchild, is no session leader and can never get a controlling
terminal back; the child exits at once. The daemon reads /dev/null, writes stdout and
stderr to its log file, moves to / (so it holds no directory busy) and reports over a pipe:
first `pid N`, then `ready PATH` once its socket listens or `error MESSAGE` when it cannot
start (it then exits). The user's process waits for that report, so it returns only once
clients can connect, with the daemon's own message otherwise. No report (the daemon died
first) is an error that quotes the end of the log; no report in time stops the daemon.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from dataclasses import dataclass

from protocol.pidfile import is_running

READY_TIMEOUT = 60.0  # seconds: binding takes milliseconds, importing the daemon well under one
EXIT_TIMEOUT = 10.0  # seconds for a daemon that reported an error to finish exiting
LOG_TAIL_LINES = 10


def default_log_file(environ: dict[str, str] | None = None) -> str:
    """$XDG_STATE_HOME/evix/evixd.log, else ~/.local/state/evix/evixd.log (XDG base directories)."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the spec says to ignore relative values
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "evix", "evixd.log")


def open_log(path: str) -> int:
    """Opens (creating, mode 0600, directory 0700) the log for appending; OSError says why not."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


class Readiness:
    """The daemon's end of the report pipe: one verdict, then closed."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def _send(self, text: str) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # the user's command may be gone (Ctrl-C): keep going
            os.write(self._fd, text.encode())
        os.close(self._fd)
        self._fd = None

    def ready(self, socket_path: str) -> None:
        self._send(f"ready {socket_path}")

    def failed(self, message: str) -> None:
        self._send(f"error {message}")


@dataclass
class Outcome:
    """What the daemon reported: its pid, and the socket it listens on or why it could not start."""

    pid: int | None
    socket: str | None = None
    error: str | None = None


class Launch:
    """The user's end: the pipe from the daemon and the intermediate child to reap."""

    def __init__(self, fd: int, child: int, log_path: str, log_offset: int) -> None:
        self.fd, self.child, self.log_path, self.log_offset = fd, child, log_path, log_offset

    def wait(self, timeout: float = READY_TIMEOUT) -> Outcome:
        """Waits for the daemon's verdict; a daemon that failed (or gave none in time) is gone after."""
        os.waitpid(self.child, 0)  # it exits right after the second fork
        try:
            report, complete = _read_to_eof(self.fd, timeout)
        finally:
            os.close(self.fd)
        outcome = self._outcome(report)
        if not complete:
            outcome = Outcome(outcome.pid, error=f"the daemon did not become ready within {timeout:g} s, "
                                                 f"so it was stopped; see {self.log_path}")
        if outcome.socket is None and outcome.pid is not None:
            _stop(outcome.pid, kill=not complete)
        return outcome

    def _outcome(self, report: str) -> Outcome:
        head, _, verdict = report.partition("\n")
        pid = int(head[4:]) if head.startswith("pid ") and head[4:].isdigit() else None
        if verdict.startswith("ready "):
            return Outcome(pid, socket=verdict[6:])
        if verdict.startswith("error "):
            return Outcome(pid, error=verdict[6:])
        return Outcome(pid, error=f"the daemon exited before it was ready; it logged to {self.log_path}:\n"
                                  + _tail(self.log_path, self.log_offset))


def daemonize(log_path: str) -> Readiness | Launch:
    """Forks the daemon off. Returns its Readiness in the daemon, a Launch in the user's process.

    Call it before any thread exists (before trio starts). OSError if the log cannot be opened."""
    log_fd = open_log(log_path)
    log_offset = os.fstat(log_fd).st_size
    read_end, write_end = os.pipe()
    sys.stdout.flush()  # or the children would print it again
    sys.stderr.flush()
    child = os.fork()
    if child:
        os.close(write_end)
        os.close(log_fd)
        return Launch(read_end, child, log_path, log_offset)
    try:
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        _leave_the_terminal(log_fd)
        os.write(write_end, f"pid {os.getpid()}\n".encode())
    except BaseException as e:  # noqa: BLE001 (a half-forked child must never return into the CLI)
        with contextlib.suppress(OSError):
            os.write(write_end, f"pid {os.getpid()}\nerror cannot start in the background: {e}".encode())
        os._exit(1)
    return Readiness(write_end)


def _read_to_eof(fd: int, timeout: float) -> tuple[str, bool]:
    """What arrives on `fd` until EOF or `timeout`, and whether EOF came."""
    data, deadline = b"", time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], remaining)[0]:
            if not (chunk := os.read(fd, 65536)):
                return data.decode(errors="replace"), True
            data += chunk
    return data.decode(errors="replace"), False


def _stop(pid: int, *, kill: bool, timeout: float = EXIT_TIMEOUT) -> None:
    """Waits for a daemon that failed to start to be gone (SIGTERM first when `kill`, SIGKILL last)."""
    if kill:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.02)


def _leave_the_terminal(log_fd: int) -> None:
    """stdin from /dev/null, stdout and stderr to the log, cwd /, imports independent of the old cwd."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.path[:] = [os.path.abspath(p) for p in sys.path]  # '' (the cwd) for `python -c`
    os.chdir("/")


def _tail(path: str, offset: int) -> str:
    """The last lines written to the log since `offset` (other daemons may share the file)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, os.fstat(f.fileno()).st_size - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError as e:
        return f"(cannot read it: {e.strerror or e})"
    return "\n".join(lines[-LOG_TAIL_LINES:])
