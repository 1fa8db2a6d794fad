"""`evixd` (and `evix daemon`): run the JSON-RPC daemon in the foreground.

The daemon never forks itself into the background: systemd (or a terminal) supervises
it, so `--foreground` is required and says so. Logs go to stderr (the journal).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from protocol.argtypes import count, positive_count, positive_seconds, seconds
from protocol.endpoint import socket_path
from protocol.environment import WORKER_ENV
from protocol.loglevel import add_logging_options, setup_logging

from evixd.engine.errors import EvixError
from .settings import DaemonSettings

DESCRIPTION = """\
Keep evaluated derivation graphs warm and answer eval, query and diff requests
(JSON-RPC 2.0, one message per line) on a Unix socket only this user can use.
"""

EPILOG = """\
socket: --socket PATH, else $EVIX_SOCKET, else $XDG_RUNTIME_DIR/evix.sock
(/run/user/$UID/evix.sock). Started by systemd socket activation (LISTEN_FDS), it
uses the socket systemd passes instead. SIGTERM or SIGINT stops it cleanly.

examples:
  evixd --foreground
  evixd --foreground --socket /tmp/evix.sock --max-sessions 4 -v
  systemctl --user enable --now evixd.socket
"""


def build_parser(prog: str = "evixd") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--foreground", action="store_true", help="run in the foreground (required: evixd never forks)")
    p.add_argument("--socket", metavar="PATH", help="socket path (see below)")
    lim = p.add_argument_group("limits")
    d = DaemonSettings(socket_path="")
    lim.add_argument("--max-connections", type=positive_count, default=d.max_connections, metavar="N",
                     help=f"open connections at once; more are refused (default {d.max_connections})")
    lim.add_argument("--max-request-kib", type=positive_count, default=d.max_request_bytes >> 10, metavar="KIB",
                     help=f"largest request line; larger ones are refused (default {d.max_request_bytes >> 10})")
    lim.add_argument("--max-sessions", type=positive_count, default=d.max_sessions, metavar="N",
                     help=f"warm sessions kept; the least recently used goes first (default {d.max_sessions})")
    lim.add_argument("--max-session-memory", type=positive_count, default=d.max_session_memory >> 20, metavar="MB",
                     help="estimated memory of all warm graphs; the least recently used goes first "
                          f"(default {d.max_session_memory >> 20})")
    lim.add_argument("--warm-seconds", type=seconds, default=d.warm_seconds, metavar="S",
                     help="how long a session keeps started workers after its last eval, 0 for never "
                          f"(default {d.warm_seconds:g})")
    lim.add_argument("--max-warm-workers", type=count, default=d.max_warm_workers, metavar="N",
                     help=f"idle started workers kept across all sessions (default {d.max_warm_workers})")
    lim.add_argument("--max-workers", type=positive_count, default=d.max_workers, metavar="N",
                     help=f"cap on a request's --workers (default {d.max_workers})")
    clients = p.add_argument_group("clients")
    clients.add_argument("--max-client-buffer-kib", type=positive_count, default=d.max_client_buffer >> 10,
                         metavar="KIB", help="events held for an eval whose client reads slowly; the evaluation "
                         f"waits past it (default {d.max_client_buffer >> 10})")
    clients.add_argument("--client-timeout", type=positive_seconds, default=d.client_timeout, metavar="S",
                         help="a client that reads nothing for S seconds while its events wait has its stream ended "
                         f"(default {d.client_timeout:g})")
    clients.add_argument("--idle-timeout", type=positive_seconds, default=d.idle_timeout, metavar="S",
                         help="close a connection with no request running and no input for S seconds "
                         f"(default {d.idle_timeout:g})")
    add_logging_options(p)
    return p


def settings_from_args(ns: argparse.Namespace) -> DaemonSettings:
    return DaemonSettings(
        socket_path=socket_path(ns.socket),
        max_connections=ns.max_connections,
        max_request_bytes=ns.max_request_kib << 10,
        max_sessions=ns.max_sessions,
        max_session_memory=ns.max_session_memory << 20,
        warm_seconds=ns.warm_seconds,
        max_warm_workers=ns.max_warm_workers,
        max_workers=ns.max_workers,
        max_client_buffer=ns.max_client_buffer_kib << 10,
        client_timeout=ns.client_timeout,
        idle_timeout=ns.idle_timeout,
    )


def main(argv: list[str] | None = None, prog: str = "evixd") -> int:
    """Runs the daemon; returns the exit status (0 after a clean stop, 1 when it cannot start)."""
    if os.environ.get(WORKER_ENV):  # this binary hosts a worker (see evixd.run_worker)
        from evix_worker import run_worker

        return run_worker()
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    if not ns.foreground:
        parser.error("evixd runs in the foreground only: pass --foreground (systemd supervises it as a service)")
    setup_logging(ns.verbose, ns.quiet, default=logging.INFO, name="evixd")
    settings = settings_from_args(ns)

    import trio

    from .server import serve

    try:
        trio.run(serve, settings)
    except EvixError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())
