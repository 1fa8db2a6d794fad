"""Who takes an item retried alone: the scheduler's own decision, driven by scripted workers
(what Nix would evaluate does not matter here; tests/test_engine_memory.py runs the same
path with real workers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
import trio

from evixd.engine.scheduler import Scheduler
from evixd.engine.worker import Worker, WorkerDied, WorkerSource
from protocol import wire
from protocol.config import EvalConfig

LIMIT_MB = 100
NAMES = [f"p{i}" for i in range(12)] + ["heavy"] + [f"q{i}" for i in range(12)]


class ScriptedWorker(Worker):
    """Answers every item at once; dies for memory on `heavy` when `dies` is set (else
    evaluates it, then asks to be recycled), as a real worker would."""

    def __init__(self, number: int, dies: bool) -> None:
        self.number, self.dies = number, dies
        self.sent: list[tuple[int, list]] = []
        self.evaluated: list[str | None] = []
        self.recycling = False
        self._in_flight: dict[int, int] = {}

    @property
    def name(self) -> str:
        return f"scripted {self.number}"

    async def send_batch(self, batch: int, items: bytes) -> None:
        self.sent.append((batch, orjson.loads(items)))

    async def receive_result(self, batch: int) -> wire.Result:
        sent, chunks = self.sent.pop(0)
        assert sent == batch
        items = [(tuple(p), n) for p, names in chunks for n in ([None] if names is None else names)]
        if self.recycling:
            return wire.Result(batch, b"", b"[]", 0, 0, 0, True, 0)
        expansions = [[[], NAMES]] if items == [((), None)] else []
        for i, (_, name) in enumerate(items):
            if name == "heavy" and self.dies:  # what it did in this batch is lost with it
                self._in_flight[batch] = i
                raise WorkerDied("worker killed: memory limit exceeded", memory=True)
            if name == "heavy":
                self.recycling = True
                self.evaluated += [n for _, n in items[:i + 1]]
                return wire.Result(batch, b"", b"[]", i + 1, 0, 0, True, 0)
        self.evaluated += [n for _, n in items]
        return wire.Result(batch, b"", orjson.dumps(expansions), len(items), 0, 0, False, 0)

    def in_flight(self, batch: int) -> int | None:
        return self._in_flight.get(batch)


class ScriptedSource(WorkerSource):
    """Records, in order, what the slots ask of it."""

    def __init__(self, dies: bool) -> None:
        self.dies = dies
        self.calls: list[tuple[str, object]] = []
        self.workers: list[ScriptedWorker] = []

    @contextlib.asynccontextmanager
    async def open(self, *, fresh: bool = False) -> AsyncIterator[Worker]:
        self.calls.append(("open", fresh))
        worker = ScriptedWorker(len(self.workers), self.dies and not fresh)
        self.workers.append(worker)
        await trio.sleep(0)
        yield worker

    async def warm(self, attr_path: tuple[str, ...]) -> None:
        self.calls.append(("warm", attr_path))
        await trio.sleep(0.01)  # others go on meanwhile

    async def aclose(self) -> None:
        pass


class ScriptedScheduler(Scheduler):
    def __init__(self, source: ScriptedSource, workers: int) -> None:
        super().__init__(EvalConfig(expr="{ }", workers=workers, max_memory_mb=LIMIT_MB), lambda events: None,
                         progress=False)
        self.source = source

    def _sources(self, nursery: trio.Nursery) -> list:
        return [self.source] * self.config.workers


async def _run(workers: int, dies: bool) -> ScriptedSource:
    source = ScriptedSource(dies)
    await ScriptedScheduler(source, workers).run()
    evaluated = [n for w in source.workers for n in w.evaluated if n is not None]
    assert sorted(evaluated) == sorted(NAMES)  # every item once, whatever happened
    return source


async def test_an_item_to_retry_alone_is_claimed_by_one_slot():
    """Worker 0 or 1 dies on `heavy`: one slot warms it and opens one fresh worker for it; the
    other slot's worker is not replaced for it."""
    source = await _run(workers=2, dies=True)
    assert source.calls.count(("warm", ("heavy",))) == 1
    assert source.calls.count(("open", True)) == 1
    fresh = [w for w in source.workers if not w.dies]
    assert [w.evaluated for w in fresh] == [["heavy"]]
