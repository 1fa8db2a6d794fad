"""Under --max-memory a worker's garbage is collected as it goes (evixd/worker_launch.py
heap_environment): Nix's own 384 MiB heap, used up before Boehm first collects, made
workers pass the limit with garbage and be recycled again and again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from evixd.engine import Session
from evixd.engine.local_worker import SpawnedWorkers
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


async def test_a_limited_run_starts_its_own_processes_instead_of_the_pools(monkeypatch: pytest.MonkeyPatch):
    """A pool's warm processes started Nix with its own heap size, too late to change: a run
    under a limit that needs another starts processes of its own, with it."""
    monkeypatch.delenv("GC_INITIAL_HEAP_SIZE", raising=False)

    async def from_the_pool():
        raise AssertionError("took a pool worker")

    async with trio.open_nursery() as nursery:
        source = SpawnedWorkers(EvalConfig(max_memory_mb=100), nursery, take=from_the_pool)
        async with await source.start() as worker:
            environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        assert f"GC_INITIAL_HEAP_SIZE={25 << 20}".encode() in environ
