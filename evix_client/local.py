"""Evaluation in this process (no daemon): imports the engine, which costs ~100 ms.

SIGTERM and SIGHUP stop the run as Ctrl-C does (stop_signals.py): the run is cancelled,
its workers are stopped, and the exit status is 128 + the signal's number. Workers die
with this process in any case (protocol.lifetime).
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

from protocol.config import EvalConfig

from .stdout import Stdout, StdoutClosed, StdoutError, can_hang_up
from .stop_signals import STOP_SIGNALS, Stopped, StopSignals

log = logging.getLogger("evix")


def run_local_eval(config: EvalConfig, out: Stdout | None = None) -> int:
    """Evaluates `config` with local workers, printing the events; returns the exit status.

    Raises StdoutError when stdout cannot take the output (the run is stopped first)."""
    with StopSignals() as stop:
        spawned: list[Any] = []
        try:
            from evixd.worker_launch import spawn

            # Workers start first: they initialise Nix while this process imports the engine.
            # With forking, one process (the template that loads the input) is all a run starts.
            command = list(config.worker_command) if config.worker_command else None
            spawned = [spawn(command) for _ in range(1 if config.fork_workers else config.workers)]
        except Stopped as e:
            _discard(spawned)
            log.warning("%s: stopping", signal.Signals(e.signum).name)
            return 128 + e.signum
        # From here a signal is remembered, and the run stops as soon as trio runs.
        stop.raising = False
        return _run(config, spawned, out or Stdout(), stop)


def _run(config: EvalConfig, spawned: list[Any], sink: Stdout, stop: StopSignals) -> int:
    import trio

    from evixd.engine import EvixError
    from evixd.engine.run import run_evaluation

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
                try:  # straight to stdout: a one-shot run keeps no graph
                    summary = await run_evaluation(config, sink.write, spawned=spawned)
                except EvixError as e:
                    sink.flush()
                    print(f"evix: error: {e}", file=sys.stderr)
                    return 1
                finally:
                    nursery.cancel_scope.cancel()
        sink.flush()
        if stop.exit_code is not None:
            return stop.exit_code
        log.info("%d derivations, %d errors in %.2f s", summary.derivations, summary.errors, summary.seconds)
        return 0

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


def _discard(spawned: list[Any]) -> None:
    """Stops workers that were started but never handed to a run."""
    for worker in spawned:
        worker.process.kill()
    for worker in spawned:
        worker.process.wait()


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
