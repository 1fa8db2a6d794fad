"""Around `serve`: the pid file, systemd's notifications, and a detached start's report.

Order: bound -> pid file claimed (a live daemon holding it refuses the start) -> listening
-> `READY=1` to systemd and "ready" to the waiting `evix daemon` -> ... -> stop requested
-> `STOPPING=1` -> closed -> pid file removed.
"""

from __future__ import annotations

from .detach import Readiness
from .pidfile import PidFile
from .server import ServeHooks
from .systemd import Notifier


class Lifecycle(ServeHooks):
    """The hooks `evixd` runs `serve` with."""

    def __init__(self, notifier: Notifier, readiness: Readiness | None = None) -> None:
        self.notifier = notifier
        self.readiness = readiness
        self.pid_file: PidFile | None = None

    def listening(self, path: str) -> None:
        if path.startswith("/"):  # not for an abstract socket passed by systemd
            self.pid_file = PidFile.claim(path)

    def ready(self, path: str) -> None:
        self.notifier.ready(f"listening on {path}")
        if self.readiness is not None:
            self.readiness.ready(path)

    def stopping(self) -> None:
        self.notifier.stopping()

    def stopped(self) -> None:
        if self.pid_file is not None:
            self.pid_file.release()

    def failed(self, message: str) -> None:
        """The daemon cannot start (or stopped before it was ready): tell whoever waits."""
        if self.readiness is not None:
            self.readiness.failed(message)
