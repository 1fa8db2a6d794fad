"""Evaluation in this process (no daemon): imports the engine, which costs ~100 ms."""

from __future__ import annotations

import sys

from protocol.config import EvalConfig


def run_local_eval(config: EvalConfig) -> int:
    from evixd.worker_launch import spawn

    # Workers start first: they initialise Nix while this process imports the engine. With
    # forking, one process (the template that loads the input) is all a run starts.
    command = list(config.worker_command) if config.worker_command else None
    spawned = [spawn(command) for _ in range(1 if config.fork_workers else config.workers)]
    import trio

    from evixd.engine import EvixError
    from evixd.engine.run import run_evaluation

    out = sys.stdout.buffer

    async def main() -> int:
        try:  # straight to stdout: a one-shot run keeps no graph
            summary = await run_evaluation(config, out.write, spawned=spawned)
        except EvixError as e:
            out.flush()
            print(f"evix: error: {e}", file=sys.stderr)
            return 1
        out.flush()
        import logging

        logging.getLogger("evix").info(
            "%d derivations, %d errors in %.2f s", summary.derivations, summary.errors, summary.seconds
        )
        return 0

    try:
        # Ctrl-C as a cancellation of the main task at a checkpoint, never raised in the middle
        # of some task's bookkeeping (the master never computes long between checkpoints).
        return trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
    except BaseExceptionGroup as group:  # trio groups what its nurseries raise
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        if group.subgroup(BrokenPipeError) is not None:  # stdout closed (`| head`)
            raise BrokenPipeError from None
        raise
