"""Runs `evix-eval-jobs` in this process, as `evix eval --no-daemon` runs (workers first,
then the engine; signals and stdout errors alike); Nix's own stderr passes through unchanged."""

from __future__ import annotations

import logging
import sys
from typing import Any

from protocol.config import EvalConfig
from protocol.loglevel import setup_logging

from .local import run_local_eval
from .stdout import Stdout


class _WorkerLines(logging.Handler):
    """Writes what workers print on stderr as they printed it: consumers parse Nix's
    `evaluation warning:` blocks, which a prefix on each line would break."""

    def emit(self, record: logging.LogRecord) -> None:
        line = getattr(record, "worker_line", None)
        sys.stderr.write((record.getMessage() if line is None else line) + "\n")
        sys.stderr.flush()


def run(config: EvalConfig, *, verbose: int = 0, quiet: int = 0) -> int:
    """The run of evix eval --no-daemon (signals, stdout errors), printing nix-eval-jobs' lines."""
    setup_logging(verbose, quiet, name="evix-eval-jobs")
    workers = logging.getLogger("evix.worker")
    workers.addHandler(_WorkerLines())
    workers.propagate = False

    async def print_jobs(config: EvalConfig, sink: Stdout, spawned: list[Any]) -> int:
        from evixd.engine.eval_jobs import run_eval_jobs

        return await run_eval_jobs(config, sink.write, sink.flush, spawned=spawned, verbose=verbose > 0)

    return run_local_eval(config, evaluate=print_jobs)
