"""The scheduler: one shared work queue, one slot per worker pulling batches from it.

A slot opens a worker from its source, keeps up to PIPELINE batches queued on it, and
feeds each answer back: events to the sink, expansions (sets to traverse) to the queue,
unfinished items back to the queue. The run is done when the queue is empty and no batch
is leased, so the set of events does not depend on the number of workers.

A worker that dies costs only the item it was on (its in-flight word says which): that
item gets an error event saying why, the others go back to the queue, and the slot opens
a new worker. A worker that asks to be recycled (over its memory threshold) is replaced
the same way once its batches are answered. The run fails only when the input itself
cannot be loaded.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from evixd.worker_launch import SpawnedWorker
from protocol import wire
from protocol.config import EvalConfig
from protocol.events import format_attr

from .errors import InputError, WorkerStartError
from .local_worker import LocalWorkers
from .pool import WorkerPool
from .work_queue import Batch, Item, Pipeline, WorkQueue
from .worker import Worker, WorkerDied, WorkerSource

log = logging.getLogger("evix.scheduler")

PIPELINE = 2  # batches queued on a worker at once
MAX_START_FAILURES = 3
MAX_UNATTRIBUTED_DEATHS = 3



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

    def to_json(self) -> dict[str, Any]:
        return {
            "derivations": self.derivations, "errors": self.errors, "seconds": round(self.seconds, 3),
            "workersStarted": self.workers_started, "workerDeaths": self.worker_deaths,
            "recycled": self.recycled, "batches": self.batches,
        }


EventSink = Callable[[bytes], Awaitable[None] | None]
"""Receives NDJSON bytes (whole lines, possibly many) as results arrive. A sink whose reader
is behind returns an awaitable: the slot waits on it before it takes in more (backpressure)."""


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
        self.queue = WorkQueue()
        self.summary = Summary()
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._slots = config.workers
        self._unattributed: collections.Counter[Item] = collections.Counter()
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
                source = LocalWorkers(self.config, nursery, spawned=self.spawned,
                                      take=self.pool.acquire if self.pool is not None else None)
                async with trio.open_nursery() as slots:
                    for _ in range(self._slots):
                        slots.start_soon(self._slot, source)
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
    async def _slot(self, source: WorkerSource) -> None:
        """Worker after worker until the work is done: every slot opens its first worker at
        once (all load the input in parallel), and replaces it after a death or a recycle."""
        start_failures = 0
        while not self.queue.done():
            self.summary.workers_started += 1
            try:
                async with source.open() as worker:
                    start_failures = 0
                    await self._feed(worker)
            except WorkerStartError as e:
                start_failures += 1
                if e.fatal or start_failures >= MAX_START_FAILURES:
                    self._fail(str(e))
                    return

    async def _feed(self, worker: Worker) -> None:
        """Keeps up to PIPELINE batches queued on `worker`, so it never waits for the master,
        until the work is done, the worker dies, or it has asked to be recycled and answered
        the batches already sent."""
        pipeline = Pipeline(self.queue)
        recycling = False
        try:
            while True:
                if not recycling:
                    await self._fill(worker, pipeline)
                if not pipeline:
                    return
                result = await worker.receive_result(pipeline.head.id)
                waiting = self._accept(result, pipeline.head)
                pipeline.finish()
                if waiting is not None:
                    await waiting
                recycling = recycling or result.recycle
                if recycling and not pipeline:
                    self.summary.recycled += 1
                    return
        except WorkerDied as died:
            self._after_death(worker, pipeline, died.reason)
        finally:
            pipeline.clear()

    async def _fill(self, worker: Worker, pipeline: Pipeline) -> None:
        """Sends batches until PIPELINE are queued; waits for work only when none is queued."""
        while len(pipeline) < PIPELINE:
            batch = self.queue.take_nowait(self._slots) if pipeline else await self.queue.take(self._slots)
            if batch is None:
                return
            pipeline.add(batch)
            self.summary.batches += 1
            await worker.send_batch(batch.id, batch.encode())

    def _accept(self, result: wire.Result, batch: Batch) -> Awaitable[None] | None:
        """Takes a batch's answer: events to the sink, new sets and unstarted items to the
        queue. Returns what the sink asks to wait for, if anything."""
        s = self.summary
        s.derivations += result.derivations
        s.errors += result.errors
        waiting = self.sink(result.events) if result.events else None
        if result.expansions != b"[]":
            for path, names in orjson.loads(result.expansions):
                s.attrsets += 1
                self.queue.put(tuple(path), names)
        if result.done < len(batch):
            for path, name in batch.items()[result.done:]:  # the worker stopped early: requeue the rest
                self.queue.put_item(path, name)
        return waiting

    def _after_death(self, worker: Worker, pipeline: Pipeline, reason: str) -> None:
        """The item in flight gets an error event saying why the worker died; the rest of its
        batch, and the batches queued behind it (never started), go back to the queue. An
        item in MAX_UNATTRIBUTED_DEATHS deaths without a known culprit gets the error too."""
        self.summary.worker_deaths += 1
        head, *behind = pipeline.batches
        items = head.items()
        in_flight = worker.in_flight(head.id)
        culprit = in_flight if in_flight is not None and in_flight < len(items) else None
        log.debug("%s died on batch %d item %s: %s", worker.name, head.id, culprit, reason)
        for i, (path, name) in enumerate(items):
            if i == culprit or (culprit is None and self._unattributed_limit((path, name))):
                self._worker_error(path, name, reason)
            else:
                self.queue.put_item(path, name)
        for batch in behind:
            for path, names in batch.chunks:
                self.queue.put(path, names)

    def _unattributed_limit(self, item: Item) -> bool:
        self._unattributed[item] += 1
        return self._unattributed[item] >= MAX_UNATTRIBUTED_DEATHS

    def _worker_error(self, path: tuple[str, ...], name: str | None, reason: str) -> None:
        full = path if name is None else path + (name,)
        if name is None and not path:
            self._fail(f"cannot load {self.config.describe()}: {reason}")
            return
        log.warning("%s: %s", format_attr(full), reason)
        self.summary.errors += 1
        line = orjson.dumps({"attr": format_attr(full), "attrPath": full, "error": reason, "fatal": False})
        self.sink(line + b"\n")  # one line: its backpressure, if any, is not waited for

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
