"""`evix`: the command-line client. Kept light: only local evaluation and `daemon` import the engine."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from protocol.config import ConfigError
from protocol.endpoint import socket_path
from protocol.environment import WORKER_ENV
from protocol.loglevel import setup_logging

from .cli import build_parser, config_from_args, filter_from_args, take_pair_options
from .stdout import StdoutError, finish


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    if os.environ.get(WORKER_ENV):  # this binary hosts a worker (see evixd.run_worker)
        from evix_worker import run_worker

        return run_worker()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["daemon"] and argv[1:2] in (["status"], ["stop"]):  # light: no daemon code
        from .daemon_control import main as control_main

        return control_main(argv[1:])
    if argv[:1] == ["daemon"]:  # the daemon has its own options (evixd's)
        from evixd.daemon.main import main as daemon_main

        return daemon_main(argv[1:], prog="evix daemon")
    if argv[:1] == ["worker"]:  # the remote worker service has its own options
        from evixd.remote_service.main import main as worker_main

        return worker_main(argv[1:])
    if argv[:1] == ["eval-jobs"]:  # nix-eval-jobs' command line
        from .eval_jobs import main as eval_jobs_main

        return eval_jobs_main(argv[1:], prog="evix eval-jobs")
    parser = build_parser()
    argv, pairs = take_pair_options(argv)
    ns = parser.parse_args(argv)
    for dest, values in pairs.items():
        if values and not hasattr(ns, dest):
            parser.error(f"--{dest.replace('_', '-')} does not apply to '{ns.command}'")
        if values:
            getattr(ns, dest).extend(values)
    if ns.command == "completion":
        from .completion import script

        sys.stdout.write(script(ns.shell, parser))
        return 0
    setup_logging(ns.verbose, ns.quiet)
    try:
        if ns.command == "eval":
            config = config_from_args(ns).validate()
            if not ns.no_daemon:
                from .daemon_commands import try_daemon_eval

                code = try_daemon_eval(config, socket_path(ns.socket))
                if code is not None:
                    return code
            from .local import run_local_eval

            return run_local_eval(config)
        if ns.command == "watch":
            from .watch import run_watch

            config = config_from_args(ns).validate()
            if config.expr is not None:
                parser.error("--expr cannot be watched: there is no file on disk to watch (use --file)")
            return run_watch(config, tuple(map(os.path.abspath, ns.watch)), socket_path(ns.socket), ns.no_daemon,
                             ns.debounce)
        if ns.command == "query":
            from .daemon_commands import run_query

            return run_query(config_from_args(ns).validate(), filter_from_args(ns), socket_path(ns.socket))
        if ns.command == "diff":
            from .daemon_commands import run_diff

            return run_diff(config_from_args(ns).validate(), socket_path(ns.socket))
    except ConfigError as e:
        parser.error(str(e))
    parser.error(f"unknown command {ns.command}")
    return 2


def entry(run: Callable[[], int] | None = None) -> None:
    """Console-script entry (of `evix`, or of `run`): exit 130 on Ctrl-C; on a stdout that
    cannot take the output, 141 (closed pipe, quietly) or 1 (one line saying why), never a traceback."""
    try:
        code = (run or main)()
    except KeyboardInterrupt:
        code = 130
    except StdoutError as e:
        code = finish(e)
    sys.exit(code)
