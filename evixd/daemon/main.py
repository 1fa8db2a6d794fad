"""`evixd` (and `evix daemon`): start the JSON-RPC daemon, in the background by default.

Without `--foreground` it detaches (evixd.daemon.detach) and the command returns once the
socket listens; `--foreground` keeps it attached, logging to stderr. Started by systemd
(socket activation or `Type=notify`) it never detaches: systemd supervises the process it
started, and hears `READY=1` and `STOPPING=1` from it (evixd.daemon.systemd).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

import trio

from protocol.argtypes import count, positive_count, positive_seconds, seconds
from protocol.endpoint import socket_path
from protocol.environment import WORKER_ENV
from protocol.helpformat import ManPageFormatter
from protocol.loglevel import add_logging_options, setup_logging

from evixd.engine.errors import EvixError
from .detach import Launch, Outcome, daemonize, default_log_file
from .lifecycle import Lifecycle
from .server import serve
from .settings import DaemonSettings
from .systemd import Notifier, started_by_systemd

DESCRIPTION = """\
Keep evaluated derivation graphs warm and answer eval, query and diff requests
(JSON-RPC 2.0, one message per line) on a Unix socket only this user can use.
"""

EPILOG = """\
socket: --socket PATH, else $EVIX_SOCKET, else $XDG_RUNTIME_DIR/evix.sock
(/run/user/$UID/evix.sock); its pid file is the same path plus ".pid".

three ways to run it:
  background  `evix daemon` (or `evixd`) returns once the socket listens and prints its
              path; logs go to $XDG_STATE_HOME/evix/evixd.log (~/.local/state/evix/...).
              Exit 1 with the daemon's message when it cannot start (e.g. already running).
  foreground  `evix daemon --foreground`: attached, logs on stderr, Ctrl-C stops it.
  systemd     started with LISTEN_FDS (socket activation) or NOTIFY_SOCKET (Type=notify)
              it stays in the foreground and notifies READY=1 / STOPPING=1.
SIGTERM, SIGINT or the `shutdown` method stop it cleanly.

  evix daemon status    is it running? pid, version, uptime, sessions, workers (exit 3: no)
  evix daemon stop      stop it and wait until it has exited

exit status: 0 once a background daemon listens, or after a clean stop in the foreground;
1 when it cannot start (already running, socket or log file unusable: the daemon's message
on stderr); 2 for a usage error; 130 on Ctrl-C while waiting for a background start.

examples:
  evix daemon
  evixd --foreground --socket /tmp/evix.sock --max-sessions 4 -v
  systemctl --user enable --now evixd.socket
"""


def build_parser(prog: str = "evixd") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=ManPageFormatter)
    p.add_argument("--foreground", action="store_true",
                   help="stay attached to the terminal and log to stderr (default: detach, unless systemd started it)")
    p.add_argument("--socket", metavar="PATH", help="socket path (see below)")
    p.add_argument("--log-file", metavar="PATH",
                   help="where a detached daemon logs (default $XDG_STATE_HOME/evix/evixd.log)")
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
    """Starts the daemon; returns the exit status (0 after a clean stop or a background start,
    1 when it cannot start, 2 for a usage error)."""
    if os.environ.get(WORKER_ENV):  # this binary hosts a worker (see evixd.run_worker)
        from evix_worker import run_worker

        return run_worker()
    ns = build_parser(prog).parse_args(argv)
    settings = settings_from_args(ns)
    readiness = None
    if not ns.foreground and not started_by_systemd():
        log_file = os.path.abspath(ns.log_file) if ns.log_file else default_log_file()
        try:
            side = daemonize(log_file)
        except OSError as e:
            print(f"{prog}: error: cannot start in the background (log file {log_file}): {e.strerror or e}",
                  file=sys.stderr)
            return 1
        if isinstance(side, Launch):
            return _report_start(side.wait(), prog, log_file, ns.quiet)
        readiness = side
    setup_logging(ns.verbose, ns.quiet, default=logging.INFO, name="evixd")
    if readiness is not None:  # a log file shared over time (and daemons) needs times and pids
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter("%(asctime)s evixd[%(process)d] %(levelname)s: %(message)s"))
    return _run(settings, prog, Lifecycle(Notifier.from_environ(), readiness))


def _run(settings: DaemonSettings, prog: str, lifecycle: Lifecycle) -> int:
    try:
        trio.run(functools.partial(serve, settings, hooks=lifecycle))
    except EvixError as e:
        if lifecycle.readiness is None:
            print(f"{prog}: error: {e}", file=sys.stderr)
        else:  # stderr is the log file: give it a time like every other line there
            logging.getLogger("evix.daemon").error("error: %s", e)
            lifecycle.failed(str(e))
        return 1
    return 0


def _report_start(outcome: Outcome, prog: str, log_file: str, quiet: int) -> int:
    """The user's side of a background start: the socket path on stdout, or the daemon's error."""
    if outcome.socket is None:
        print(f"{prog}: error: {outcome.error}", file=sys.stderr)
        return 1
    print(outcome.socket)
    if not quiet:
        print(f"{prog}: started in the background (pid {outcome.pid}), logging to {log_file}; "
              "`evix daemon stop` stops it", file=sys.stderr)
    return 0


def entry() -> None:
    """Console-script entry: exit 130 on Ctrl-C (while waiting for a background start)."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
