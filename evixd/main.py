"""`evixd`: the daemon's command (the JSON-RPC server comes with the daemon issue)."""

from __future__ import annotations

import sys


def entry() -> None:
    print("evixd: the daemon is not implemented yet", file=sys.stderr)
    sys.exit(2)
