"""The one work queue of a run: attributes still to evaluate, handed out in batches.

Work is a queue of chunks `(parent path, child names)`; names None means the path itself
(the root). A batch is sized so that every slot stays busy (a few hundred items at most,
so per-item round trips disappear). A batch taken is leased: the run is done only when
the queue is empty and every lease has been given back (`release`), so a slot that is
still evaluating can add work and nobody stops early.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field

import orjson
import trio

MAX_BATCH = 256

Path = tuple[str, ...]
Chunk = tuple[Path, list[str] | None]
Item = tuple[Path, str | None]


@dataclass(eq=False)
class Batch:
    """Chunks handed to one worker at once, under one id (the in-flight word names it)."""

    id: int
    chunks: list[Chunk]
    alone: bool = False  # a retry: this item alone, in a fresh worker
    released: bool = False

    def items(self) -> list[Item]:
        """The batch's items in the order the worker evaluates them (flat index order)."""
        return [(p, n) for p, names in self.chunks for n in ([None] if names is None else names)]

    def __len__(self) -> int:
        return sum(1 if names is None else len(names) for _, names in self.chunks)

    def encode(self) -> bytes:
        return orjson.dumps(self.chunks)


@dataclass
class WorkQueue:
    chunks: collections.deque[Chunk] = field(default_factory=collections.deque)
    items: int = 0  # items queued (not leased)
    leased: int = 0  # batches taken and not released
    alone: collections.deque[Item] = field(default_factory=collections.deque)
    """Items to retry alone, each in a fresh worker (their worker passed its memory limit)."""
    _lot: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def put(self, path: Path, names: list[str] | None) -> None:
        self.chunks.append((path, names))
        self.items += 1 if names is None else len(names)
        self._lot.unpark_all()

    def put_item(self, path: Path, name: str | None) -> None:
        self.put(path, None if name is None else [name])

    def put_alone(self, path: Path, name: str | None) -> None:
        self.alone.append((path, name))
        self._lot.unpark_all()

    def done(self) -> bool:
        return not self.chunks and not self.alone and self.leased == 0

    async def take(self, slots: int) -> Batch | None:
        """The next batch (leased until `release`); None when all work is done, or when an
        item waits to be retried alone (the caller's worker should then make way for a fresh one)."""
        while not self.chunks:
            if self.leased == 0 or self.alone:
                return None
            await self._lot.park()
        return self.take_nowait(slots)

    def take_alone(self) -> Batch | None:
        """A batch of one item to retry alone, if one waits (leased until `release`)."""
        if not self.alone:
            return None
        path, name = self.alone.popleft()
        self.leased += 1
        return Batch(next(self._ids), [(path, None if name is None else [name])], alone=True)

    def take_nowait(self, slots: int) -> Batch | None:
        """The next batch if there is work queued now, else None."""
        if not self.chunks:
            return None
        target = max(1, min(MAX_BATCH, self.items // (2 * slots)))
        chunks: list[Chunk] = []
        taken = 0
        while self.chunks and taken < target:
            path, names = self.chunks.popleft()
            if names is None:
                chunks.append((path, None))
                taken += 1
                continue
            room = target - taken
            if len(names) > room:
                self.chunks.appendleft((path, names[room:]))
                names = names[:room]
            chunks.append((path, names))
            taken += len(names)
        self.items -= taken
        self.leased += 1
        return Batch(next(self._ids), chunks)

    def release(self, batch: Batch) -> None:
        """Gives a batch's lease back (once): its answer, or its items, are back in the queue."""
        assert not batch.released, f"batch {batch.id} released twice"
        batch.released = True
        self.leased -= 1
        self._lot.unpark_all()


class Pipeline:
    """The batches sent to one worker and not answered yet, oldest first.

    The one place leases are given back: `finish` when the head's answer has been taken in,
    `clear` when the worker's life ends (after a death, its batches' items are requeued
    first). So every take gets exactly one release, whatever path the worker's life takes."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self.batches: collections.deque[Batch] = collections.deque()

    def __len__(self) -> int:
        return len(self.batches)

    def add(self, batch: Batch) -> None:
        self.batches.append(batch)

    @property
    def head(self) -> Batch:
        return self.batches[0]

    def finish(self) -> None:
        self.queue.release(self.batches.popleft())

    def clear(self) -> None:
        while self.batches:
            self.queue.release(self.batches.popleft())
