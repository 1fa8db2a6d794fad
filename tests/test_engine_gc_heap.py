"""Under --max-memory a worker's garbage is collected as it goes (evixd/worker_launch.py
heap_environment): Nix's own 384 MiB heap, used up before Boehm first collects, made
workers pass the limit with garbage and be recycled again and again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from evixd.engine import Session
from evixd.engine.local_worker import SpawnedWorkers
from evixd.engine.pool import WorkerPool
from evixd.worker_launch import heap_environment
from protocol.config import EvalConfig

LIMIT_MB = 120

# Each package's name needs a list of 150,000 strings that is garbage right after: about
# 15 MiB of it per package, 40 packages, and almost nothing stays live.
GARBAGE_SET = """
let mk = i: derivation {
      name = "g${toString i}-${toString (builtins.length (builtins.filter (s: s == "")
               (builtins.genList (j: "s${toString (i + j)}") 150000)))}";
      system = "x86_64-linux"; builder = "/bin/sh";
    };
in builtins.listToAttrs (builtins.genList (i: { name = "g${toString i}"; value = mk i; }) 40)
"""


async def _run(path: Path) -> Session:
    session = await Session.open(EvalConfig(file=str(path), max_memory_mb=LIMIT_MB, workers=1))
    await session.evaluate()
    return session


async def test_garbage_does_not_get_a_worker_recycled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    f = tmp_path / "garbage.nix"
    f.write_text(GARBAGE_SET)
    monkeypatch.setenv("GC_INITIAL_HEAP_SIZE", str(384 << 20))  # Nix's own heap size, as before
    nix_heap = await _run(f)
    monkeypatch.delenv("GC_INITIAL_HEAP_SIZE")
    ours = await _run(f)
    assert nix_heap.last_summary.recycled >= 2  # the input does fill a worker with garbage
    assert (ours.last_summary.recycled, ours.last_summary.worker_deaths) == (0, 0)
    assert len(ours.graph.derivations) == 40 and not ours.graph.errors
    assert {a: r.drv_path for a, r in ours.graph.derivations.items()} == \
        {a: r.drv_path for a, r in nix_heap.graph.derivations.items()}


def test_the_heap_is_sized_only_under_a_limit_and_never_over_the_users(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GC_INITIAL_HEAP_SIZE", raising=False)
    assert heap_environment(EvalConfig()) == {}  # the default limit: Nix's heap
    assert heap_environment(EvalConfig(max_memory_mb=400)) == {"GC_INITIAL_HEAP_SIZE": str(100 << 20)}
    monkeypatch.setenv("GC_INITIAL_HEAP_SIZE", "1000000")
    assert heap_environment(EvalConfig(max_memory_mb=400)) == {}


async def test_a_limited_run_takes_pool_processes_started_with_its_heap(monkeypatch: pytest.MonkeyPatch):
    """A pool's process started Nix with the environment it was spawned with, too late to
    change: the pool hands out processes started as the run asks, and closes idle ones that
    were started otherwise."""
    monkeypatch.delenv("GC_INITIAL_HEAP_SIZE", raising=False)

    def heap_of(pid: int) -> list[bytes]:
        return [v for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v.startswith(b"GC_INITIAL_HEAP_SIZE=")]

    async with trio.open_nursery() as nursery:
        pool = WorkerPool(size=1)
        await nursery.start(pool.serve)
        while pool.idle < 1:  # a warm process, started for a run without a limit
            await trio.sleep(0.01)
        async with await SpawnedWorkers(EvalConfig(), nursery, take=pool.acquire).start() as worker:
            assert heap_of(worker.pid) == []
        while pool.idle < 1:
            await trio.sleep(0.01)
        stale = pool._idle[0]
        async with await SpawnedWorkers(EvalConfig(max_memory_mb=100), nursery, take=pool.acquire).start() as worker:
            assert worker is not stale and heap_of(worker.pid) == [f"GC_INITIAL_HEAP_SIZE={25 << 20}".encode()]
        while pool.idle < 1:  # the refill is started as the last run asked
            await trio.sleep(0.01)
        assert heap_of(pool._idle[0].pid) == [f"GC_INITIAL_HEAP_SIZE={25 << 20}".encode()]
        nursery.cancel_scope.cancel()
