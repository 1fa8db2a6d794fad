"""The one work queue of a run: attributes still to evaluate, handed out in batches.

Work is a queue of chunks `(parent path, child names)`; names None means the path itself
(the root). A batch is sized so that every slot stays busy (a few hundred items at most,
so per-item round trips disappear). A batch taken is leased: the run is done only when
the queue is empty and every lease has been given back (`release`), so a slot that is
still evaluating can add work and nobody stops early.

With workers that own only some systems (remote ones), work is routed (`routing.py` keeps the
rules): a derivation a worker rejected goes to the lane of its system, where only workers that
own it take work, and so do the children of a set whose derivations were all of one system.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field

import orjson
import trio

from .routing import PROBE, Chunk, Item, Path, Routes, Systems

MAX_BATCH = 256


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
    routes: Routes = field(default_factory=Routes)
    _lot: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def put(self, path: Path, names: list[str] | None) -> None:
        if self.routes.active:
            for lane, lane_names in self.routes.split(path, names):
                self._append(self.routes.lanes[lane] if lane is not None else self.chunks, path, lane_names)
        else:
            self._append(self.chunks, path, names)
        self._lot.unpark_all()

    def _append(self, lane: collections.deque[Chunk], path: Path, names: list[str] | None) -> None:
        lane.append((path, names))
        self.items += 1 if names is None else len(names)

    def reject(self, path: Path, name: str, system: str) -> bool:
        """A derivation its worker does not own: queued for the workers that own `system`.
        False when no live worker owns it (the run cannot complete)."""
        self.routes.known[(path, name)] = system
        self.put(path, [name])
        return self.routes.owned(system)

    def learn(self, parent: Path, system: str) -> bool:
        """A derivation of `system` under `parent`; True when queued work may now go to the
        workers owning `system` up front: then call reroute() (once for all that was learned
        from one batch, not once per set)."""
        return self.routes.learn(parent, system)

    def reroute(self) -> None:
        """Queued work split again by what is now known of its systems."""
        general, self.chunks = self.chunks, collections.deque()
        self.items -= sum(1 if names is None else len(names) for _, names in general)
        for path, names in general:
            for lane, lane_names in self.routes.split(path, names):
                self._append(self.routes.lanes[lane] if lane is not None else self.chunks, path, lane_names)
        self._lot.unpark_all()

    def retire(self, systems: Systems) -> tuple[Item, str] | None:
        """A worker slot that is gone for good; returns a derivation now owned by no live
        worker (the run cannot complete), else None. Routed work only hinted to an
        unowned system goes back to every worker."""
        self.routes.unregister(systems)
        for system in list(self.routes.lanes):
            if self.routes.owned(system):
                continue
            lane = self.routes.lanes.pop(system)
            for path, names in lane:
                for name in [None] if names is None else names:
                    if self.routes.known.get((path, name)) == system:
                        return (path, name), system
            self.items -= sum(1 if names is None else len(names) for _, names in lane)
            for path, names in lane:
                self._append(self.chunks, path, names)
        self._lot.unpark_all()
        return None

    def put_item(self, path: Path, name: str | None) -> None:
        self.put(path, None if name is None else [name])

    def put_alone(self, path: Path, name: str | None) -> None:
        self.alone.append((path, name))
        self._lot.unpark_all()

    def done(self) -> bool:
        return not self.chunks and not self.alone and self.leased == 0 and not any(self.routes.lanes.values())

    async def take(self, slots: int, systems: Systems = None) -> Batch | None:
        """The next batch for a worker owning `systems` (leased until `release`); None when
        all work is done, or when an item waits to be retried alone (the caller's worker
        should then make way for a fresh one)."""
        while not any(self._eligible(systems)):
            if self.done() or self.alone:
                return None
            await self._lot.park()
        return self.take_nowait(slots, systems)

    def _eligible(self, systems: Systems) -> list[collections.deque[Chunk]]:
        """The lanes a worker owning `systems` takes from, in the order it prefers them."""
        lanes = self.routes.lanes
        if systems is None:
            return [self.chunks, *lanes.values()]
        return [*(lanes[s] for s in sorted(systems) if s in lanes), self.chunks]

    def take_alone(self) -> Batch | None:
        """A batch of one item to retry alone, if one waits (leased until `release`)."""
        if not self.alone:
            return None
        path, name = self.alone.popleft()
        self.leased += 1
        return Batch(next(self._ids), [(path, None if name is None else [name])], alone=True)

    def unclaim(self, batch: Batch) -> None:
        """A batch from take_alone that no worker was opened for goes back to wait."""
        (path, name), = batch.items()
        self.release(batch)
        self.put_alone(path, name)

    def take_nowait(self, slots: int, systems: Systems = None) -> Batch | None:
        """The next batch for a worker owning `systems` if there is work for it now, else None."""
        lanes = [lane for lane in self._eligible(systems) if lane]
        if not lanes:
            return None
        target = max(1, min(MAX_BATCH, self.items // (2 * slots)))
        chunks: list[Chunk] = []
        taken = 0
        for lane in lanes:
            probed: list[Chunk] = []  # the rest of chunks of unknown system: not again in this batch
            while lane and taken < target:
                path, names = lane.popleft()
                if names is None:
                    chunks.append((path, None))
                    taken += 1
                    continue
                room = target - taken
                probing = lane is self.chunks and self.routes.active and self.routes.unknown(path)
                if probing:
                    room = min(room, PROBE)
                if len(names) > room:
                    (probed.append if probing else lane.appendleft)((path, names[room:]))
                    names = names[:room]
                chunks.append((path, names))
                taken += len(names)
            lane.extendleft(reversed(probed))
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
