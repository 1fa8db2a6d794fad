"""Running under systemd: recognising it, and telling it when we are ready and stopping.

sd_notify is one datagram per state change, sent to the Unix datagram socket that
`$NOTIFY_SOCKET` names: a path, or an abstract-namespace name written with a leading '@'.
The datagram is newline-separated `VAR=value` lines (`READY=1`, `STOPPING=1`, `STATUS=...`).
systemd needs `READY=1` for `Type=notify`; a failed send is logged, never fatal (the service
then times out in systemd, which says so in the journal).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("evix.daemon")

NOTIFY_ENV = "NOTIFY_SOCKET"


def started_by_systemd(environ: dict[str, str] | None = None) -> bool:
    """Whether systemd started us (it passed a socket, or waits for a notification): never detach then."""
    env = os.environ if environ is None else environ
    activated = bool(env.get("LISTEN_FDS")) and env.get("LISTEN_PID") == str(os.getpid())
    return activated or bool(env.get(NOTIFY_ENV))


class Notifier:
    """Sends sd_notify datagrams to one address (does nothing without one)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Notifier:
        """Takes `$NOTIFY_SOCKET` out of the environment, so worker processes never see it."""
        env = os.environ if environ is None else environ
        return cls(env.pop(NOTIFY_ENV, None))

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nMAINPID={os.getpid()}\nSTATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    def send(self, message: str) -> bool:
        """Sends one datagram; False (logged) when there is no address or it cannot be sent."""
        if self.address is None:
            return False
        if self.address.startswith("@"):
            target = "\0" + self.address[1:]
        elif self.address.startswith("/"):
            target = self.address
        else:
            log.warning("%s=%s is not a Unix socket address: not notifying systemd", NOTIFY_ENV, self.address)
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), target)
        except OSError as e:
            log.warning("cannot notify systemd on %s: %s", self.address, e.strerror or e)
            return False
        log.debug("notified systemd: %s", message.replace("\n", " "))
        return True
