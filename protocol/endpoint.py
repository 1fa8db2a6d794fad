"""Where the daemon listens, and who is at the other end: shared by `evixd` and the `evix` client.

`--socket PATH`, else `$EVIX_SOCKET`, else `$XDG_RUNTIME_DIR/evix.sock`, else
`/run/user/$UID/evix.sock` (what XDG_RUNTIME_DIR is on a systemd machine, so a client
started without a login session still finds the user's daemon).
"""

from __future__ import annotations

import os
import socket
import struct

SOCKET_ENV = "EVIX_SOCKET"
SOCKET_NAME = "evix.sock"


def socket_path(explicit: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The daemon socket path by the rule above; relative paths become absolute."""
    env = os.environ if environ is None else environ
    if explicit:
        return os.path.abspath(explicit)
    if env.get(SOCKET_ENV):
        return os.path.abspath(env[SOCKET_ENV])
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return os.path.join(runtime, SOCKET_NAME)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED).

    The daemon checks its clients with it, and the client its daemon: a socket on our path
    that another user serves is an attack or a misconfiguration, never ours to talk to."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid
