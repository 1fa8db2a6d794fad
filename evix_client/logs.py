"""Logging on stderr: -v/-q adjust the level, EVIX_LOG overrides both."""

from __future__ import annotations

import logging
import os
import sys

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
          "off": logging.CRITICAL + 10}
ENV = "EVIX_LOG"


def setup_logging(verbose: int = 0, quiet: int = 0) -> None:
    env = os.environ.get(ENV, "").strip().lower()
    if env in LEVELS:
        level = LEVELS[env]
    else:
        level = logging.WARNING - 10 * verbose + 10 * quiet
        level = max(logging.DEBUG, min(level, LEVELS["off"]))
    logging.basicConfig(level=level, stream=sys.stderr, format="evix: %(message)s" if level > logging.DEBUG
                        else "evix %(name)s %(levelname)s: %(message)s")
