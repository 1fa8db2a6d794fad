"""Logging on stderr for `evix` and `evixd`: -v/-q move the level, EVIX_LOG overrides both."""

from __future__ import annotations

import argparse
import logging
import os
import sys

ENV = "EVIX_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
          "off": logging.CRITICAL + 10}


def setup_logging(verbose: int = 0, quiet: int = 0, *, default: int = logging.WARNING, name: str = "evix") -> None:
    """Logs to stderr at `default` moved 10 per -v down / -q up, unless EVIX_LOG names a level."""
    env = os.environ.get(ENV, "").strip().lower()
    if env in LEVELS:
        level = LEVELS[env]
    else:
        level = max(logging.DEBUG, min(default - 10 * verbose + 10 * quiet, LEVELS["off"]))
    fmt = f"{name}: %(message)s" if level > logging.DEBUG else f"{name} %(name)s %(levelname)s: %(message)s"
    logging.basicConfig(level=level, stream=sys.stderr, format=fmt)


def add_logging_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """-v/--verbose and -q/--quiet, as `setup_logging` reads them."""
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (repeat for more)")
    p.add_argument("-q", "--quiet", action="count", default=0,
                   help=f"less logging (repeat for less); {ENV}=debug|info|warning|error|off overrides both")
