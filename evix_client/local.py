"""Evaluation in this process (no daemon): imports the engine, which costs ~100 ms."""

from __future__ import annotations

import sys

from protocol.config import EvalConfig


def run_local_eval(config: EvalConfig) -> int:
    import trio

    from evixd import EvixError, Session

    out = sys.stdout.buffer

    def sink(data: bytes) -> None:
        out.write(data)

    async def main() -> int:
        session = await Session.open(config)
        try:
            summary = await session.evaluate(sink, progress=None)
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
        return trio.run(main)
    except BaseExceptionGroup as group:  # trio groups what its nurseries raise
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        raise
