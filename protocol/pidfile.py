"""The daemon's pid file: where it is, what it holds, and when to believe it.

`SOCKET.pid`, beside the socket, mode 0600, one line: the daemon's pid. The daemon writes it
once it listens and removes it when it stops. A daemon killed with SIGKILL leaves it behind,
and by then its pid may belong to any process. So a pid read from the file is believed only
while that process is alive (not a zombie) and runs the daemon (`evixd`, `evix daemon`, or
Python running `evixd.daemon`): nothing else is ever signalled or waited for because of it.
Shared by the daemon (which writes it) and `evix daemon status|stop` (which read it), so it
uses only the standard library and Linux's /proc.
"""

from __future__ import annotations

import os

SUFFIX = ".pid"


def pid_file_for(socket_path: str) -> str:
    """The pid file of the daemon listening on `socket_path`."""
    return socket_path + SUFFIX


def read_pid(path: str) -> int | None:
    """The pid the file names, or None when it is missing, unreadable or holds no pid."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie has exited: its parent just has not reaped it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2:][:1]  # the name in parentheses may hold spaces
    return state not in (b"Z", b"X", b"")


def runs_the_daemon(pid: int) -> bool:
    """Whether `pid` is alive and its command line is the evix daemon's."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return False
    return is_running(pid) and _daemon_command(args)


def live_daemon_pid(path: str) -> int | None:
    """The pid in the pid file at `path` if it names a running daemon, else None (absent or stale)."""
    pid = read_pid(path)
    return pid if pid is not None and runs_the_daemon(pid) else None


def _daemon_command(args: list[str]) -> bool:
    # Console scripts run as `python /venv/bin/evixd ...`, so the name is argv[0] or argv[1].
    head = [os.path.basename(a) for a in args[:3]]
    if "evixd" in head[:2] or any(a == "evix" and b == "daemon" for a, b in zip(head, head[1:])):
        return True
    if args[1:2] != ["-c"]:
        return False
    code = args[2] if len(args) > 2 else ""  # `python -c "from evixd.daemon.main import entry; ..."`
    return "evixd.daemon.main" in code or ("evix_client.main" in code and "daemon" in args[3:4])
