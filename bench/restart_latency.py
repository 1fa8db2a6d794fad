"""Restart latency: milliseconds from the end of a worker's life (a recycle, as a memory limit
causes them) to its replacement sending its first batch, with forked and spawned workers.

    python bench/restart_latency.py [FILE] [--runs N]

FILE (default: bench/out/realistic-nofn.nix if generated, else the 10k package set) is
evaluated with --max-memory 1, so every worker is replaced after each batch. Prints the
median and quartiles over the first 200 replacements, for `fork` and `--no-fork`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evixd.engine import scheduler as scheduler_module  # noqa: E402
from evixd.engine.scheduler import Scheduler  # noqa: E402
from evixd.engine.template import ForkedWorkers  # noqa: E402
from protocol.config import EvalConfig  # noqa: E402

HERE = Path(__file__).resolve().parent


class TimedWorkers(ForkedWorkers):
    """ForkedWorkers that note when a worker's life ends and when the next one first sends."""

    ended: float | None = None
    gaps: list[float] = []
    enough = 200  # replacements measured per mode (then the run is stopped)
    stop: trio.CancelScope

    @contextlib.asynccontextmanager
    async def open(self, *, fresh: bool = False) -> AsyncIterator:
        async with super().open(fresh=fresh) as worker:
            send = worker.send_batch

            async def first_send(batch: int, items: bytes) -> None:
                if TimedWorkers.ended is not None:
                    TimedWorkers.gaps.append(time.monotonic() - TimedWorkers.ended)
                    TimedWorkers.ended = None
                    if len(TimedWorkers.gaps) >= TimedWorkers.enough:
                        TimedWorkers.stop.cancel()
                worker.send_batch = send  # type: ignore[method-assign]
                await send(batch, items)

            worker.send_batch = first_send  # type: ignore[method-assign]
            try:
                yield worker
            finally:
                TimedWorkers.ended = time.monotonic()


async def measure(path: Path, fork: bool, runs: int) -> list[float]:
    TimedWorkers.gaps = []
    scheduler_module.ForkedWorkers = TimedWorkers  # type: ignore[misc]
    for _ in range(runs):
        TimedWorkers.ended = None
        config = EvalConfig(file=str(path), workers=1, max_memory_mb=1, fork_workers=fork)
        with trio.CancelScope() as TimedWorkers.stop:
            await Scheduler(config, lambda data: None, progress=False).run()
    return [g * 1000 for g in TimedWorkers.gaps]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = HERE / "out" / "realistic-nofn.nix"
    p.add_argument("file", nargs="?", type=Path,
                   default=default if default.exists() else HERE / "out" / "pkgset-10000.nix")
    p.add_argument("--runs", type=int, default=1)
    ns = p.parse_args()
    for fork in (True, False):
        gaps = trio.run(measure, ns.file, fork, ns.runs)
        q = statistics.quantiles(gaps, n=4) if len(gaps) > 1 else gaps * 3
        print(f"{'fork' if fork else 'no-fork':8} {len(gaps):5} restarts   median {statistics.median(gaps):7.1f} ms"
              f"   quartiles {q[0]:7.1f} / {q[2]:7.1f} ms   ({ns.file.name})")


if __name__ == "__main__":
    main()
