"""A small blocking JSON-RPC client for evixd over its Unix socket.

Standard library sockets plus orjson only: `evix query` must start fast, so nothing here
(or in what it imports) may pull in trio, cffi or capnp. One request at a time; `events`
notifications for the running request go to a callback as NDJSON text.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

from protocol import framing, rpc
from protocol.endpoint import peer_uid

CONNECT_TIMEOUT = 5.0
READ_SIZE = 1 << 20

# Errors meaning "there is no daemon to use here": fall back (eval) or say so (query, diff).
_UNAVAILABLE = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK, errno.EACCES, errno.EPERM}


class DaemonError(Exception):
    """Talking to the daemon failed (the message says how)."""


class DaemonUnavailable(DaemonError):
    """Nothing usable listens on the socket path (missing, refused, or not ours)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"no evix daemon is listening on {path} ({reason})")
        self.path = path
        self.reason = reason


class ForeignDaemonError(DaemonError):
    """The socket is served by another user: never talked to, and no reason to fall back
    silently either (another user's socket on our path is an attack or a misconfiguration)."""

    def __init__(self, path: str, uid: int) -> None:
        super().__init__(
            f"refusing the daemon socket {path}: it is served by {_user(uid)}, not by you ({_user(os.getuid())}); "
            "remove it or choose another socket (--socket, $EVIX_SOCKET), or evaluate with --no-daemon"
        )
        self.path = path
        self.uid = uid


def _user(uid: int) -> str:
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


class ConnectionLost(DaemonError):
    """The daemon closed the connection before answering."""


class DaemonClient:
    """One connection to the daemon. Use as a context manager, or call `close`."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self._reader = sock.makefile("rb", buffering=READ_SIZE)
        self._ids = itertools.count(1)

    @classmethod
    def connect(cls, path: str, timeout: float = CONNECT_TIMEOUT) -> DaemonClient:
        """Connects to `path`; DaemonUnavailable when no daemon can be used there,
        ForeignDaemonError when another user's process serves it (checked with SO_PEERCRED)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            if e.errno in _UNAVAILABLE:
                raise DaemonUnavailable(path, e.strerror or str(e)) from None
            if isinstance(e, TimeoutError):
                raise DaemonUnavailable(path, "timed out connecting") from None
            raise DaemonError(f"cannot connect to {path}: {e.strerror or e}") from None
        uid = peer_uid(sock)
        if uid != os.getuid():
            sock.close()
            raise ForeignDaemonError(path, uid)
        sock.settimeout(None)  # an eval may stream for a long time
        return cls(sock, path)

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()
        self.sock.close()

    def abort(self) -> None:
        """Ends the connection from another thread: a `call` waiting in it raises ConnectionLost."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def call(self, method: str, params: dict[str, Any] | None = None,
             on_events: Callable[[str], None] | None = None,
             on_notification: Callable[[str, dict[str, Any]], None] | None = None) -> Any:
        """Sends one request and returns its result; raises the rpc error class of an error
        answer. Other notifications for it (`watchDiff`) go to `on_notification(method, params)`."""
        rid = next(self._ids)
        try:
            self.sock.sendall(framing.encode(rpc.request(method, params, rid)))
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may have refused the connection (too many, another user) before
            # reading anything: its error line is still there to read.
            message = self._read_message()
            if isinstance(message, dict) and isinstance(message.get("error"), dict):
                raise rpc.RpcError.from_json(message["error"]) from None
            raise ConnectionLost(f"the daemon on {self.path} closed the connection") from None
        while True:
            message = self._read_message()
            if isinstance(message, dict) and message.get("method") == rpc.EVENTS_METHOD:
                p = message.get("params") or {}
                if on_events is not None and p.get("id") == rid:
                    on_events(p.get("ndjson", ""))
                continue
            if isinstance(message, dict) and "method" in message and "id" not in message:
                p = message.get("params") or {}
                if on_notification is not None and isinstance(p, dict) and p.get("id") == rid:
                    on_notification(message["method"], p)
                continue
            if isinstance(message, list) or not isinstance(message, dict):
                raise rpc.InvalidResponseError(f"unexpected message from the daemon: {str(message)[:200]}")
            if message.get("id") not in (rid, None):
                continue  # not ours (cannot happen with one request at a time)
            if "error" in message:
                raise rpc.RpcError.from_json(message["error"])
            if message.get("id") == rid and "result" in message:
                return message["result"]
            raise rpc.InvalidResponseError(f"malformed response from the daemon: {str(message)[:200]}")

    def _read_message(self) -> Any:
        try:
            line = self._reader.readline()
        except ConnectionResetError:
            line = b""
        if not line.endswith(b"\n"):
            raise ConnectionLost(f"the daemon on {self.path} closed the connection before answering")
        try:
            return framing.decode(line)
        except framing.FrameDecodeError as e:
            raise rpc.InvalidResponseError(f"the daemon sent invalid JSON: {e}") from None
