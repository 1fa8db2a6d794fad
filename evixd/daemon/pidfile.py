"""The daemon's side of the pid file (format and trust rules: protocol.pidfile).

Claimed once the socket is bound, so only the daemon that owns the socket writes it. A pid
file that names another live daemon means that daemon lost its socket (or is still
stopping): the start is refused rather than leaving two daemons, one of them unreachable.
Anything else found there is stale and replaced. Written to a temporary file and renamed,
so a reader never sees half a pid; removed on exit only while it still names us.
"""

from __future__ import annotations

import contextlib
import logging
import os

from protocol.pidfile import pid_file_for, read_pid, runs_the_daemon

from .listening_socket import AlreadyRunningError, SocketSetupError

log = logging.getLogger("evix.daemon")


class PidFile:
    """The pid file this daemon wrote."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def claim(cls, socket_path: str) -> PidFile:
        """Writes our pid beside `socket_path`; AlreadyRunningError if another daemon holds it."""
        path = pid_file_for(socket_path)
        other = read_pid(path)
        if other is not None and other != os.getpid():
            if runs_the_daemon(other):
                raise AlreadyRunningError(
                    f"evixd is already running as pid {other} ({path}) but does not answer on {socket_path} "
                    f"(still stopping, or its socket was removed): `evix daemon stop --socket {socket_path}` "
                    f"or `kill {other}`, then start again"
                )
            log.info("replacing the stale pid file %s (pid %d is not an evix daemon)", path, other)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SocketSetupError(f"cannot write the pid file {path}: {e.strerror or e}") from None
        return cls(path)

    def release(self) -> None:
        """Removes the pid file if it still names this process."""
        if read_pid(self.path) == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

