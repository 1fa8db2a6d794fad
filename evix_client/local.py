"""Evaluation in this process (no daemon): imports the engine, which costs ~100 ms.

SIGTERM and SIGHUP stop the run as Ctrl-C does (stop_signals.py): the run is cancelled,
its workers are stopped, and the exit status is 128 + the signal's number. Workers die
with this process in any case (protocol.lifetime).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from protocol.config import EvalConfig

from .stdout import Stdout, StdoutClosed, StdoutError, can_hang_up
from .stop_signals import STOP_SIGNALS, Stopped, StopSignals

log = logging.getLogger("evix")


Evaluate = Callable[[EvalConfig, Stdout, list[Any]], Awaitable[int]]
"""A run in this process: (config, stdout, processes started ahead) -> exit status."""


def run_local_eval(config: EvalConfig, out: Stdout | None = None, evaluate: Evaluate | None = None) -> int:
    """Evaluates `config` with local workers, printing evix's events (or what `evaluate`
    prints: evix-eval-jobs' lines); returns the exit status.

    Raises StdoutError when stdout cannot take the output (the run is stopped first)."""
    with StopSignals() as stop:
        spawned: list[Any] = []
        try:
            from evixd.worker_launch import spawn_ahead

            spawned = spawn_ahead(config)  # before the engine is imported
        except Stopped as e:
            for worker in spawned:
                worker.discard()
            log.warning("%s: stopping", signal.Signals(e.signum).name)
            return 128 + e.signum
        # From here a signal is remembered, and the run stops as soon as trio runs.
        stop.raising = False
        return _run(config, spawned, out or Stdout(), stop, evaluate or _print_events)


async def _print_events(config: EvalConfig, sink: Stdout, spawned: list[Any]) -> int:
    from evixd.engine import EvixError
    from evixd.engine.run import run_evaluation

    try:  # straight to stdout: a one-shot run keeps no graph
        summary = await run_evaluation(config, sink.write, spawned=spawned)
    except EvixError as e:
        sink.flush()
        print(f"evix: error: {e}", file=sys.stderr)
        return 1
    log.info("%d derivations, %d errors in %.2f s", summary.derivations, summary.errors, summary.seconds)
    return 0


def _run(config: EvalConfig, spawned: list[Any], sink: Stdout, stop: StopSignals, evaluate: Evaluate) -> int:
    import trio

    async def watch_signals(signals: Any, scope: trio.CancelScope) -> None:
        if stop.received is None:  # one may have come while trio started
            async for signum in signals:
                stop.received = signum
                break
        log.warning("%s: stopping", signal.Signals(stop.received).name)
        scope.cancel()

    async def watch_stdout() -> None:
        from evixd.hangup import wait_hangup

        await wait_hangup(sys.stdout.fileno())
        raise StdoutClosed("stdout was closed")

    async def main() -> int:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, signals, nursery.cancel_scope)
                if can_hang_up(sys.stdout.fileno()):
                    nursery.start_soon(watch_stdout)  # `| head`: stop when the reader goes
                try:
                    code = await evaluate(config, sink, spawned)
                finally:
                    nursery.cancel_scope.cancel()
        sink.flush()
        return stop.exit_code if stop.exit_code is not None else code

    try:
        # Ctrl-C as a cancellation of the main task at a checkpoint, never raised in the middle
        # of some task's bookkeeping (the master never computes long between checkpoints).
        return trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
    except BaseExceptionGroup as group:  # trio groups what its nurseries raise
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        failed = group.subgroup(StdoutError)
        if failed is not None:
            raise _first_leaf(failed) from None
        raise


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
