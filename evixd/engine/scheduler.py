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
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

from evixd.worker_launch import SpawnedWorker
from protocol import wire
from protocol.config import EvalConfig
from protocol.events import EventKind, error_event, event_kind, format_attr
from protocol.rpc_results import summary_json

from .errors import InputError, RemoteUnreachable, WorkerStartError
from .local_worker import SpawnedWorkers
from .pool import WorkerPool
from .template import ForkedWorkers
from .work_queue import Batch, Item, Pipeline, WorkQueue
from .worker import Worker, WorkerDied, WorkerSource

log = logging.getLogger("evix.scheduler")

PIPELINE = 2  # batches queued on a worker at once
MAX_START_FAILURES = 3
MAX_UNATTRIBUTED_DEATHS = 3



def _full(item: Item) -> tuple[str, ...]:
    """An item's attrPath (its name None: the set at its path itself)."""
    path, name = item
    return path if name is None else path + (name,)


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
    memory_retries: int = 0  # items retried alone after their worker passed the memory limit
    batches: int = 0
    worker_died_on: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (attrPath, why)

    def to_json(self) -> dict[str, Any]:
        return summary_json(self)


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
        self._slots = config.workers + sum(r.connections for r in config.remotes)
        self._live = 0  # slots that have not given up (a remote that stays unreachable retires its slot)
        self._retired: list[str] = []
        self._unattributed: collections.Counter[Item] = collections.Counter()
        self._fatal: str | None = None
        self._cancel: trio.CancelScope | None = None
        self._slots_scope: trio.CancelScope | None = None

    async def run(self) -> Summary:
        """Evaluates everything; raises InputError when the input cannot be loaded."""
        started = time.monotonic()
        self.queue.put((), None)
        try:
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                if self.progress:
                    nursery.start_soon(self._report_progress, started)
                sources = self._sources(nursery)
                try:
                    async with trio.open_nursery() as slots:
                        self._slots_scope = slots.cancel_scope
                        for source in sources:
                            self.queue.routes.register(source.systems)
                            self._live += 1
                            slots.start_soon(self._slot, source)
                finally:
                    with trio.CancelScope(shield=True):
                        for source in dict.fromkeys(sources):
                            await source.aclose()
                nursery.cancel_scope.cancel()  # stops the progress line and stderr forwarders
        finally:
            self.summary.seconds = time.monotonic() - started
            if self.progress:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
        if self._fatal is not None:
            raise InputError(self._fatal)
        return self.summary

    def _sources(self, nursery: trio.Nursery) -> list[Any]:
        """One per slot: the local workers' shared source (workers times), then each remote connection."""
        sources: list[Any] = []
        if self.config.workers:
            processes = SpawnedWorkers(self.config, nursery, spawned=self.spawned,
                                       take=self.pool.acquire if self.pool is not None else None)
            sources += [ForkedWorkers(self.config, nursery, processes)] * self.config.workers
        if not self.config.remotes:
            return sources
        from .remote_sources import RemoteInput  # ssl, tarfile...: only runs with remotes load them
        from .remote_worker import RemoteConnection

        inputs = RemoteInput(self.config)
        for remote in self.config.remotes:
            sources += [RemoteConnection(remote, i, self.config, inputs) for i in range(remote.connections)]
        return sources

    def _retire(self, source: WorkerSource, why: str) -> None:
        """A slot whose worker cannot come back: the run goes on with the others, or fails
        when no worker is left (or none left owns a system some derivation needs)."""
        self._live -= 1
        if why not in self._retired:  # connections of one remote give up for one reason: said once
            self._retired.append(why)
        log.warning("%s; going on without it", why)
        stuck = self.queue.retire(source.systems)
        if self._live == 0 and not self.queue.done():
            self._fail("no worker left to evaluate on: " + "; ".join(self._retired))
        elif stuck is not None:
            (path, name), system = stuck
            self._no_owner(_full((path, name)), system)

    def _no_owner(self, attr_path: tuple[str, ...], system: str) -> None:
        gone = f" (gone: {'; '.join(self._retired)})" if self._retired else ""
        self._fail(f"no worker accepted derivation at {format_attr(attr_path)} for system {system}{gone}")

    def _fail(self, message: str) -> None:
        if self._fatal is None:
            self._fatal = message
        assert self._cancel is not None
        self._cancel.cancel()

    # ---- one slot -----------------------------------------------------------------------
    async def _slot(self, source: WorkerSource) -> None:
        """Worker after worker until the work is done: every slot opens its first worker at
        once (all load the input in parallel), and replaces it after a death or a recycle.
        An item to retry alone is claimed first, so one slot warms it and opens a fresh
        worker for it while the others go on."""
        start_failures = 0
        alone: Batch | None = None
        while not self.queue.done():  # an item held in `alone` is leased: not done
            self.summary.workers_started += 1
            alone = alone or self.queue.take_alone()
            try:
                if alone is not None:  # heavy: later workers had better share it
                    await source.warm(_full(alone.items()[0]))
                async with source.open(fresh=alone is not None) as worker:
                    start_failures = 0
                    claimed, alone = alone, None
                    await self._feed(worker, claimed)
            except RemoteUnreachable as e:
                if alone is not None:
                    self.queue.unclaim(alone)
                self._retire(source, str(e))
                return
            except WorkerStartError as e:
                start_failures += 1
                if e.fatal or start_failures >= MAX_START_FAILURES:
                    self._fail(str(e))
                    return
        # All done, so no batch is out: slots still reconnecting to a remote need not go on.
        assert self._slots_scope is not None
        self._slots_scope.cancel()

    async def _feed(self, worker: Worker, alone: Batch | None) -> None:
        """Keeps up to PIPELINE batches queued on `worker`, so it never waits for the master,
        until the work is done, the worker dies, or it has to make way (it asked to be
        recycled, or an item waits to be retried alone) and has answered what was sent.
        A fresh worker takes the item to retry `alone` it was opened for, and only that."""
        pipeline = Pipeline(self.queue)
        stopping = alone is not None
        try:
            if alone is not None:
                await self._send(worker, pipeline, alone)
            while True:
                if not stopping:
                    stopping = await self._fill(worker, pipeline)
                if not pipeline:
                    return
                result = await worker.receive_result(pipeline.head.id)
                waiting = self._accept(result, pipeline.head, worker)
                pipeline.finish()
                if waiting is not None:
                    await waiting
                if result.recycle and not stopping:
                    self.summary.recycled += 1
                    stopping = True
        except WorkerDied as died:
            self._after_death(worker, pipeline, died)
        finally:
            pipeline.clear()

    async def _fill(self, worker: Worker, pipeline: Pipeline) -> bool:
        """Sends batches until PIPELINE are queued; waits for work only when none is queued.
        True when this worker should take no more (an item waits for a fresh worker)."""
        while len(pipeline) < PIPELINE:
            batch = (self.queue.take_nowait(self._slots, worker.systems) if pipeline
                     else await self.queue.take(self._slots, worker.systems))
            if batch is None:
                return bool(self.queue.alone)
            await self._send(worker, pipeline, batch)
        return False

    async def _send(self, worker: Worker, pipeline: Pipeline, batch: Batch) -> None:
        pipeline.add(batch)
        self.summary.batches += 1
        await worker.send_batch(batch.id, batch.encode())

    def _accept(self, result: wire.Result, batch: Batch, worker: Worker) -> Awaitable[None] | None:
        """Takes a batch's answer: events to the sink, new sets and unstarted items to the
        queue. Returns what the sink asks to wait for, if anything."""
        s = self.summary
        s.derivations += result.derivations
        s.errors += result.errors
        events = self._route(result.events, worker) if result.events and self.queue.routes.active else result.events
        waiting = self.sink(events) if events else None
        if result.expansions != b"[]":
            for path, names in orjson.loads(result.expansions):
                s.attrsets += 1
                self.queue.put(tuple(path), names)
        if result.done < len(batch):
            rest = batch.items()[result.done:]
            if result.out_of_memory:  # the worker's GC heap cap stopped this item
                self._memory_casualty(*rest.pop(0), batch, "out of memory: evaluating this attribute passed the "
                                      f"worker memory limit (--max-memory {self.config.max_memory_mb} MiB); "
                                      f"Nix said: {result.out_of_memory}")
            for path, name in rest:  # the worker stopped early: requeue the rest
                self.queue.put_item(path, name)
        return waiting

    def _route(self, events: bytes, worker: Worker) -> bytes:
        """Derivations of systems `worker` does not own are taken out and requeued for their
        owners; the others teach the queue which system a set's children are of."""
        kept = []
        learned = False
        for line in events.split(b"\n"):
            if b'"drvPath":' in line and event_kind(event := orjson.loads(line)) is EventKind.DERIVATION:
                path, system = tuple(event["attrPath"]), event.get("system", "")
                learned |= self.queue.learn(path[:-1], system)
                if worker.systems is not None and system not in worker.systems:
                    self.summary.derivations -= 1
                    log.debug("%s rejects %s (%s)", worker.name, event["attr"], system)
                    if not self.queue.reject(path[:-1], path[-1], system):
                        self._no_owner(path, system)
                    continue
            kept.append(line)
        if learned:
            self.queue.reroute()
        return b"\n".join(kept)

    def _after_death(self, worker: Worker, pipeline: Pipeline, died: WorkerDied) -> None:
        """The item in flight gets an error event saying why the worker died (or, when it
        died for memory, a retry alone in a fresh worker); the rest of its batch, and the
        batches queued behind it (never started), go back to the queue. An item in
        MAX_UNATTRIBUTED_DEATHS deaths without a known culprit gets the error too."""
        self.summary.worker_deaths += 1
        if died.innocent:  # nothing it evaluated is to blame: everything goes back
            for batch in pipeline.batches:
                for path, names in batch.chunks:
                    self.queue.put(path, names)
            return
        head, *behind = pipeline.batches
        items = head.items()
        in_flight = worker.in_flight(head.id)
        culprit = in_flight if in_flight is not None and in_flight < len(items) else None
        log.debug("%s died on batch %d item %s: %s", worker.name, head.id, culprit, died.reason)
        for i, (path, name) in enumerate(items):
            if i == culprit and died.memory:
                self._memory_casualty(path, name, head, died.reason)
            elif i == culprit or (culprit is None and self._unattributed_limit((path, name))):
                self._worker_error(path, name, died.reason)
            else:
                self.queue.put_item(path, name)
        for batch in behind:
            for path, names in batch.chunks:
                self.queue.put(path, names)

    def _memory_casualty(self, path: tuple[str, ...], name: str | None, batch: Batch, reason: str) -> None:
        """An item whose worker passed the memory limit: memory left by earlier items may be
        to blame, so it is retried once, alone, in a fresh worker; past the limit there too,
        it is an error event."""
        if batch.alone:
            self._worker_error(path, name, f"{reason} (also when evaluated alone in a fresh worker)")
        else:
            self.summary.memory_retries += 1
            self.queue.put_alone(path, name)

    def _unattributed_limit(self, item: Item) -> bool:
        self._unattributed[item] += 1
        return self._unattributed[item] >= MAX_UNATTRIBUTED_DEATHS

    def _worker_error(self, path: tuple[str, ...], name: str | None, reason: str) -> None:
        full = _full((path, name))
        if name is None and not path:
            self._fail(f"cannot load {self.config.describe()}: {reason}")
            return
        log.warning("%s: %s", format_attr(full), reason)
        self.summary.worker_died_on.append((full, reason))
        self.summary.errors += 1
        self.sink(error_event(format_attr(full), full, reason) + b"\n")  # one line: its backpressure is not waited for

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
