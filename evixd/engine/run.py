"""One evaluation with what the master adds to the workers' events: the Scheduler alone, or,
with `--check-cache-status`, the Scheduler feeding a stage that adds each derivation's cache
status (looked up while the evaluation goes on) before its line reaches the sink."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable

import orjson
import trio

from evixd.worker_launch import SpawnedWorker
from protocol.aterm import DrvParseError
from protocol.config import EvalConfig
from protocol.events import error_event

from .cache_status import CacheStatus
from .pool import WorkerPool
from .scheduler import EventSink, Scheduler, Summary
from .store_service import StoreService, StoreServiceError

log = logging.getLogger("evix.cache_status")

LOOKUPS = 32  # derivations whose cache status is looked up at once


class CacheStatusStage:
    """Derivation lines wait here for their cache status; other lines pass straight on."""

    def __init__(self, status: CacheStatus, sink: EventSink) -> None:
        self.status = status
        self.sink = sink
        self._send, self._receive = trio.open_memory_channel[bytes](math.inf)

    def feed(self, data: bytes) -> Awaitable[None] | None:
        """An event sink for the Scheduler; what the sink asks to wait for is passed back."""
        passing = []
        for line in data.splitlines():
            if b'"drvPath":' in line:
                self._send.send_nowait(line)
            elif line:
                passing.append(line)
        return self.sink(b"\n".join(passing) + b"\n") if passing else None

    async def _put(self, data: bytes) -> None:
        """To the sink, waiting as it asks (a slow client of the daemon)."""
        waiting = self.sink(data)
        if waiting is not None:
            await waiting

    def close(self) -> None:
        self._send.close()

    async def run(self) -> None:
        """Looks up the lines fed until `close`, LOOKUPS at a time; returns when all are out."""
        limiter = trio.CapacityLimiter(LOOKUPS)
        async with trio.open_nursery() as nursery, self._receive:
            async for line in self._receive:
                await limiter.acquire_on_behalf_of(line)
                nursery.start_soon(self._one, line, limiter)

    async def _one(self, line: bytes, limiter: trio.CapacityLimiter) -> None:
        try:
            event = orjson.loads(line)
            try:
                fields = await self.status.fields(event["drvPath"])
            except (OSError, DrvParseError, StoreServiceError) as e:
                log.warning("%s: cannot check the cache status: %s", event["attr"], e)
                await self._put(error_event(event["attr"], event["attrPath"],
                                            f"error: checking the cache status of {event['drvPath']}: {e}") + b"\n")
                return
            await self._put(line[:-1] + b"," + orjson.dumps(fields)[1:] + b"\n")
        finally:
            limiter.release_on_behalf_of(line)


async def run_evaluation(config: EvalConfig, sink: EventSink, *, progress: bool | None = None,
                         pool: WorkerPool | None = None, spawned: list[SpawnedWorker] | None = None) -> Summary:
    """Evaluates `config`, every NDJSON chunk to `sink` (with cache status when asked for)."""
    if not config.check_cache_status:
        return await Scheduler(config, sink, progress=progress, pool=pool, spawned=spawned).run()
    async with StoreService(config) as store:
        stage = CacheStatusStage(CacheStatus.for_store(store), sink)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stage.run)
            try:
                return await Scheduler(config, stage.feed, progress=progress, pool=pool, spawned=spawned).run()
            finally:
                stage.close()
