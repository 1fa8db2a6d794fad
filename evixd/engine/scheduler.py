"""The scheduler: one shared work queue, N worker slots pulling batches from it.

Work is a queue of chunks `(parent path, child names)`; an attrset event adds one chunk
with its children. A slot takes a batch sized to keep every slot busy (a few hundred items
at most, so per-item round trips disappear), sends it to its worker, and feeds the answer
back: events to the sink, expansions to the queue, unfinished items back to the queue.
The run is done when the queue is empty and no slot is busy, so the set of events does not
depend on the number of workers.

A worker that dies costs only the item it was on (known from its progress word): that item
gets an error event saying why, the others go back to the queue, and the slot starts a new
worker. The run fails only when the input itself cannot be loaded.
"""

from __future__ import annotations

import collections
import itertools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

from evixd.worker_launch import SpawnedWorker
from protocol import wire
from protocol.config import EvalConfig
from protocol.events import format_attr

from .errors import InputError, WorkerStartError
from .pool import WorkerPool
from .local_worker import WorkerDied, WorkerProcess

log = logging.getLogger("evix.scheduler")

MAX_BATCH = 256
PIPELINE = 2  # batches queued on a worker at once
MAX_START_FAILURES = 3
MAX_UNATTRIBUTED_DEATHS = 3

Chunk = tuple[tuple[str, ...], list[str] | None]  # (parent path, names); names None: the path itself


@dataclass
class Summary:
    """What a run produced (the events themselves went to the sink)."""

    derivations: int = 0
    errors: int = 0
    attrsets: int = 0
    seconds: float = 0.0
    workers_started: int = 0
    worker_deaths: int = 0
    recycled: int = 0
    batches: int = 0
    worker_died_on: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (attrPath, why)

    def to_json(self) -> dict[str, Any]:
        return {
            "derivations": self.derivations, "errors": self.errors, "seconds": round(self.seconds, 3),
            "workersStarted": self.workers_started, "workerDeaths": self.worker_deaths,
            "recycled": self.recycled, "batches": self.batches,
        }


EventSink = Callable[[bytes], None]
"""Receives NDJSON bytes (whole lines, possibly many) as results arrive."""


@dataclass
class _Queue:
    chunks: collections.deque[Chunk] = field(default_factory=collections.deque)
    items: int = 0
    busy: int = 0
    lot: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)

    def put(self, path: tuple[str, ...], names: list[str] | None) -> None:
        self.chunks.append((path, names))
        self.items += 1 if names is None else len(names)
        self.lot.unpark_all()

    def done(self) -> bool:
        return not self.chunks and self.busy == 0

    async def take(self, slots: int) -> list[Chunk] | None:
        """The next batch (busy until `release`), or None when all work is done."""
        while not self.chunks:
            if self.busy == 0:
                return None
            await self.lot.park()
        return self.take_nowait(slots)

    def take_nowait(self, slots: int) -> list[Chunk] | None:
        """The next batch if there is work queued now, else None."""
        if not self.chunks:
            return None
        target = max(1, min(MAX_BATCH, self.items // (2 * slots)))
        batch: list[Chunk] = []
        taken = 0
        while self.chunks and taken < target:
            path, names = self.chunks.popleft()
            if names is None:
                batch.append((path, None))
                taken += 1
                continue
            room = target - taken
            if len(names) > room:
                self.chunks.appendleft((path, names[room:]))
                names = names[:room]
            batch.append((path, names))
            taken += len(names)
        self.items -= taken
        self.busy += 1
        return batch

    def release(self) -> None:
        self.busy -= 1
        self.lot.unpark_all()


def _flat(batch: list[Chunk]) -> list[tuple[tuple[str, ...], str | None]]:
    return [(p, None) if names is None else (p, n) for p, names in batch for n in ([None] if names is None else names)]


class Scheduler:
    """Runs one evaluation of `config` and streams its events to `sink`."""

    def __init__(
        self,
        config: EvalConfig,
        sink: EventSink,
        *,
        progress: bool | None = None,
        pool: WorkerPool | None = None,
        spawned: list[SpawnedWorker] | None = None,
    ) -> None:
        """`pool` hands out warm workers; `spawned` are workers started ahead of this run
        (evixd.worker_launch), used first."""
        config.validate()
        self.config = config
        self.sink = sink
        self.pool = pool
        self.spawned = list(spawned or ())
        self.queue = _Queue()
        self.summary = Summary()
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._batch_ids = itertools.count(1)
        self._unattributed: collections.Counter[tuple[tuple[str, ...], str | None]] = collections.Counter()
        self._fatal: str | None = None
        self._cancel: trio.CancelScope | None = None

    async def run(self) -> Summary:
        """Evaluates everything; raises InputError when the input cannot be loaded."""
        started = time.monotonic()
        self.queue.put((), None)
        try:
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                if self.progress:
                    nursery.start_soon(self._report_progress, started)
                async with trio.open_nursery() as slots:
                    for _ in range(self.config.workers):
                        slots.start_soon(self._slot, nursery)
                nursery.cancel_scope.cancel()  # stops the progress line and stderr forwarders
        finally:
            self.summary.seconds = time.monotonic() - started
            if self.progress:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
        if self._fatal is not None:
            raise InputError(self._fatal)
        return self.summary

    def _fail(self, message: str) -> None:
        if self._fatal is None:
            self._fatal = message
        assert self._cancel is not None
        self._cancel.cancel()

    # ---- one slot -----------------------------------------------------------------------
    async def _slot(self, nursery: trio.Nursery) -> None:
        """One worker's life: start it at once (every slot loads the input in parallel), keep
        up to PIPELINE batches queued on it so it never waits for the master, and replace it
        after a death or a recycle while work remains."""
        worker: WorkerProcess | None = None
        sent: collections.deque[tuple[int, list[Chunk]]] = collections.deque()
        start_failures = 0
        try:
            while True:
                if worker is None:
                    if self.queue.done():
                        return
                    try:
                        worker = await self._start_worker(nursery)
                        start_failures = 0
                    except WorkerStartError as e:
                        start_failures += 1
                        if e.fatal or start_failures >= MAX_START_FAILURES:
                            self._fail(str(e))
                            return
                        continue
                    draining = False
                try:
                    while not draining and len(sent) < PIPELINE:
                        batch = self.queue.take_nowait(self.config.workers) if sent else await self.queue.take(
                            self.config.workers
                        )
                        if batch is None:
                            break
                        batch_id = next(self._batch_ids)
                        sent.append((batch_id, batch))
                        self.summary.batches += 1
                        await worker.send_batch(batch_id, orjson.dumps(batch))
                    if not sent:
                        return
                    batch_id, batch = sent[0]
                    result = await worker.receive_result(batch_id)
                except WorkerDied as died:
                    self.summary.worker_deaths += 1
                    in_flight = worker.in_flight(sent[0][0]) if sent else None
                    await worker.close()
                    worker = None
                    for k, (_, batch) in enumerate(sent):
                        if k == 0:
                            self._after_death(batch, died.reason, in_flight)
                        else:  # queued behind the one it died on: never started
                            self._put_back(batch)
                        self.queue.release()
                    sent.clear()
                    continue
                sent.popleft()
                self._accept(result, batch)
                self.queue.release()
                if result.restart:
                    draining = True  # let the batches already sent come back, then replace it
                if draining and not sent:
                    self.summary.recycled += 1
                    await worker.close()
                    worker = None
        finally:
            if worker is not None:
                await worker.close()
            for _ in sent:
                self.queue.release()

    async def _start_worker(self, nursery: trio.Nursery) -> WorkerProcess:
        self.summary.workers_started += 1
        if self.pool is not None:
            worker = await self.pool.acquire()
        else:
            worker = WorkerProcess(list(self.config.worker_command) if self.config.worker_command else None)
            await worker.start(nursery, self.spawned.pop() if self.spawned else None)
        try:
            await worker.setup(self.config)
        except BaseException:
            await worker.close()
            raise
        return worker

    def _accept(self, result: wire.Result, batch: list[Chunk]) -> None:
        """Takes a batch's answer: events to the sink, new sets and unstarted items to the queue."""
        s = self.summary
        s.derivations += result.derivations
        s.errors += result.errors
        if result.events:
            self.sink(result.events)
        if result.expansions != b"[]":
            for path, names in orjson.loads(result.expansions):
                s.attrsets += 1
                self.queue.put(tuple(path), names)
        if result.done < sum(1 if names is None else len(names) for _, names in batch):
            for path, name in _flat(batch)[result.done:]:  # the worker stopped early: requeue the rest
                self.queue.put(path, None if name is None else [name])

    def _after_death(self, batch: list[Chunk], reason: str, in_flight: int | None) -> None:
        """The item in flight gets an error event saying why the worker died, the others go
        back to the queue (an item in three deaths without a known culprit gets the error too)."""
        flat = _flat(batch)
        culprit = in_flight if in_flight is not None and in_flight < len(flat) else None
        for i, (path, name) in enumerate(flat):
            if i == culprit or (culprit is None and self._unattributed_limit((path, name))):
                self._worker_error(path, name, reason)
            else:
                self.queue.put(path, None if name is None else [name])

    def _put_back(self, batch: list[Chunk]) -> None:
        for path, names in batch:
            self.queue.put(path, names)

    def _unattributed_limit(self, item: tuple[tuple[str, ...], str | None]) -> bool:
        self._unattributed[item] += 1
        return self._unattributed[item] >= MAX_UNATTRIBUTED_DEATHS

    def _worker_error(self, path: tuple[str, ...], name: str | None, reason: str) -> None:
        full = path if name is None else path + (name,)
        if name is None and not path:
            self._fail(f"cannot load {self.config.describe()}: {reason}")
            return
        log.warning("%s: %s", format_attr(full), reason)
        self.summary.worker_died_on.append((full, reason))
        self.summary.errors += 1
        self.sink(orjson.dumps({"attr": format_attr(full), "attrPath": full, "error": reason, "fatal": False}) + b"\n")

    # ---- progress -----------------------------------------------------------------------
    async def _report_progress(self, started: float) -> None:
        while True:
            await trio.sleep(0.1)
            s = self.summary
            elapsed = max(time.monotonic() - started, 1e-6)
            done = s.derivations + s.errors + s.attrsets
            sys.stderr.write(
                f"\r\x1b[Kevix: {s.derivations} derivations, {self.queue.items} queued, "
                f"{s.errors} errors, {done / elapsed:.0f}/s"
            )
            sys.stderr.flush()
