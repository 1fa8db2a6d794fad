"""What a slot warms before its next worker, and who takes an item retried alone: the
scheduler's own decisions, driven by scripted workers (what Nix would evaluate does not
matter here; tests/test_engine_memory.py runs the same paths with real workers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
import trio

from evixd.engine.scheduler import WARM_GROWTH, Scheduler
from evixd.engine.worker import Worker, WorkerDied, WorkerSource
from protocol import wire
from protocol.config import EvalConfig

MIB = 1 << 20
LIMIT_MB = 100
NAMES = [f"p{i}" for i in range(12)] + ["heavy"] + [f"q{i}" for i in range(12)]


class ScriptedWorker(Worker):
    """Answers every item at once; on `heavy` its heap grew `growth` bytes and, after it, it
    asks to be recycled (or dies for memory on it, when `dies` is set), as a real worker would."""

    def __init__(self, number: int, growth: int, dies: bool) -> None:
        self.number, self.growth, self.dies = number, growth, dies
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
                return wire.Result(batch, b"", b"[]", i + 1, 0, 0, True, 0, heaviest=i, heaviest_growth=self.growth)
        self.evaluated += [n for _, n in items]
        return wire.Result(batch, b"", orjson.dumps(expansions), len(items), 0, 0, False, 0)

    def in_flight(self, batch: int) -> int | None:
        return self._in_flight.get(batch)


class ScriptedSource(WorkerSource):
    """Records, in order, what the slots ask of it."""

    def __init__(self, growth: int, dies: bool = False) -> None:
        self.growth, self.dies = growth, dies
        self.calls: list[tuple[str, object]] = []
        self.workers: list[ScriptedWorker] = []

    @contextlib.asynccontextmanager
    async def open(self, *, fresh: bool = False) -> AsyncIterator[Worker]:
        self.calls.append(("open", fresh))
        worker = ScriptedWorker(len(self.workers), self.growth, self.dies and not fresh)
        self.workers.append(worker)
        await trio.sleep(0)
        yield worker

    async def warm(self, attr_path: tuple[str, ...], *, unless_busy: bool = False) -> None:
        self.calls.append(("warm" if unless_busy else "warm, waiting", attr_path))
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


async def _run(growth: int, workers: int = 1, dies: bool = False) -> ScriptedSource:
    source = ScriptedSource(growth, dies)
    await ScriptedScheduler(source, workers).run()
    evaluated = [n for w in source.workers for n in w.evaluated if n is not None]
    assert sorted(evaluated) == sorted(NAMES)  # every item once, whatever happened
    return source


async def test_the_item_a_recycled_worker_grew_most_in_is_warmed_before_its_successor():
    growth = int(LIMIT_MB * MIB * sum(WARM_GROWTH) / 2)
    source = await _run(growth)
    assert source.calls == [("open", False), ("warm", ("heavy",)), ("open", False)]  # not waiting for another


async def test_no_warming_for_an_item_too_small_to_share_or_too_big_for_the_template():
    for growth in (int(LIMIT_MB * MIB * WARM_GROWTH[0]) - MIB, int(LIMIT_MB * MIB * WARM_GROWTH[1]) + MIB):
        source = await _run(growth)
        assert source.calls == [("open", False), ("open", False)]


async def test_an_item_to_retry_alone_is_claimed_by_one_slot():
    """Worker 0 or 1 dies on `heavy`: one slot warms it and opens one fresh worker for it; the
    other slot's worker is not replaced for it."""
    source = await _run(0, workers=2, dies=True)
    assert source.calls.count(("warm, waiting", ("heavy",))) == 1  # a fresh worker shares it
    assert source.calls.count(("open", True)) == 1
    fresh = [w for w in source.workers if not w.dies]
    assert [w.evaluated for w in fresh] == [["heavy"]]
