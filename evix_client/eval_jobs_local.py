"""Runs `evix-eval-jobs` in this process: workers start first, then the engine is imported
(as for `evix eval --no-daemon`); Nix's own stderr output passes through unchanged."""

from __future__ import annotations

import logging
import sys

from protocol.config import EvalConfig
from protocol.loglevel import setup_logging


class _WorkerLines(logging.Handler):
    """Writes what workers print on stderr as they printed it: consumers parse Nix's
    `evaluation warning:` blocks, which a prefix on each line would break."""

    def emit(self, record: logging.LogRecord) -> None:
        line = getattr(record, "worker_line", None)
        sys.stderr.write((record.getMessage() if line is None else line) + "\n")
        sys.stderr.flush()


def run(config: EvalConfig, *, verbose: int = 0, quiet: int = 0) -> int:
    from evixd.worker_launch import spawn

    command = list(config.worker_command) if config.worker_command else None
    spawned = [spawn(command) for _ in range(config.workers)]
    setup_logging(verbose, quiet, name="evix-eval-jobs")
    workers = logging.getLogger("evix.worker")
    workers.addHandler(_WorkerLines())
    workers.propagate = False
    import trio

    from evixd.engine.eval_jobs import run_eval_jobs

    out = sys.stdout.buffer

    async def main() -> int:
        try:
            return await run_eval_jobs(config, out.write, out.flush, spawned=spawned, verbose=verbose > 0)
        finally:
            out.flush()

    try:
        return trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        if group.subgroup(BrokenPipeError) is not None:
            raise BrokenPipeError from None
        raise
