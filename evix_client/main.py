"""`evix`: the command-line client. Kept light: only `eval` without a daemon imports the engine."""

from __future__ import annotations

import os
import sys

from protocol.config import ConfigError

from .cli import build_parser, config_from_args
from .logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    if os.environ.get("EVIX_WORKER"):  # this binary hosts a worker (see evixd.run_worker)
        from evix_worker import run_worker

        return run_worker()
    parser = build_parser()
    ns = parser.parse_args(argv)
    setup_logging(ns.verbose, ns.quiet)
    try:
        if ns.command == "eval":
            config = config_from_args(ns).validate()
            from .local import run_local_eval

            return run_local_eval(config)
    except ConfigError as e:
        parser.error(str(e))
    parser.error(f"unknown command {ns.command}")
    return 2


def entry() -> None:
    """Console-script entry: exit 130 on Ctrl-C, quietly on a closed stdout."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)
