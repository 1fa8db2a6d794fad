"""Where the daemon listens: one rule shared by `evixd` and the `evix` client.

`--socket PATH`, else `$EVIX_SOCKET`, else `$XDG_RUNTIME_DIR/evix.sock`, else
`/run/user/$UID/evix.sock` (what XDG_RUNTIME_DIR is on a systemd machine, so a client
started without a login session still finds the user's daemon).
"""

from __future__ import annotations

import os

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
