"""The library entry point: a Session evaluates a config once and keeps the graph warm.

    session = await Session.open(EvalConfig(flake=".#hydraJobs", workers=4))
    async with session.stream() as events:
        async for event in events:
            print(event)
    linux = await session.query_snapshot(Filter(systems=("x86_64-linux",)))
    changes = await session.diff_once()
    async with session.watch() as updates:  # re-evaluates on every change of its files
        async for update in updates:
            print(update.diff.to_json())

A Session is the one owner of what belongs to one config: the config, the warm graph and
its query index, the last summary, how many evaluations ran and when, and the warm worker
pool it draws from. A host (the daemon) adds only its own bookkeeping around it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable

import trio

from evixd.worker_launch import SpawnedWorker
from protocol.config import EvalConfig
from protocol.events import Derivation
from protocol.query import Filter

from .errors import SessionError
from .event_stream import Decoded, EventStream, stream_events
from .graph import Diff, Graph, diff_graphs
from .pool import WorkerPool
from .query_index import QueryIndex
from .reevaluation import WatchUpdate
from .run import run_evaluation
from .scheduler import EventSink, Summary


class Session:
    """One evaluation config and its warm graph. Not safe for concurrent evaluations."""

    def __init__(self, config: EvalConfig, pool: WorkerPool | None = None, *, indexed: bool = False) -> None:
        """`pool` hands out warm workers (else each run spawns its own); `indexed` builds a
        QueryIndex of every new graph (what a long-lived host answering queries wants)."""
        self.config = config
        self.key = config.session_key()  # what is evaluated: fixed for the session's life
        self.pool = pool
        self.indexed = indexed
        self.graph: Graph | None = None
        self.index: QueryIndex | None = None  # of `graph`, replaced together with it
        self.last_summary: Summary | None = None  # of the last successful evaluation
        self.evaluations = 0  # successful ones
        self.evaluated_at: float | None = None  # wall-clock end of the last successful one
        self.last_eval_end = time.monotonic()  # monotonic end of the last one, even failed
        self._streamed = False
        # --override-input pairs added to every evaluation: how the input is fetched, not
        # what it is (a watch re-locks path inputs this way, see watch_paths.py)
        self.input_overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    async def open(
        cls, config: EvalConfig, cwd: str | None = None, pool: WorkerPool | None = None, *, indexed: bool = False
    ) -> Session:
        """Validates `config` and resolves its local paths (against `cwd`); nothing is evaluated yet.

        With a running `pool` (see WorkerPool), workers come from it instead of being spawned."""
        return cls(config.validate().resolved(cwd), pool, indexed=indexed)

    def reconfigure(self, config: EvalConfig) -> None:
        """Changes how the next evaluation runs (workers, memory, timeout...); what is
        evaluated must stay the same, or the warm graph would no longer match the key."""
        if config.session_key() != self.key:
            raise SessionError("reconfigure may change how a session evaluates, not what")
        self.config = config

    def run_config(self) -> EvalConfig:
        """The config an evaluation runs: the session's, with `input_overrides` added."""
        if not self.input_overrides:
            return self.config
        return dataclasses.replace(self.config, override_inputs=self.config.override_inputs + self.input_overrides)

    @property
    def memory_bytes(self) -> int:
        """The estimated size of the warm graph as indexed (0 without an index)."""
        return self.index.memory_bytes if self.index is not None else 0

    async def evaluate(self, sink: EventSink | None = None, *, progress: bool | None = False,
                       spawned: list[SpawnedWorker] | None = None) -> Summary:
        """Runs one evaluation; every NDJSON chunk goes to `sink`; the result becomes the warm
        graph. `spawned`: processes started ahead for it (evixd.worker_launch.spawn_ahead)."""
        return await self._evaluate(sink, None, progress, spawned)

    async def _evaluate(
        self, sink: EventSink | None, decoded: Callable[[Decoded], None] | None, progress: bool | None,
        spawned: list[SpawnedWorker] | None = None,
    ) -> Summary:
        """`evaluate`, also handing each chunk's events, as the graph decoded them, to `decoded`."""
        graph = Graph()

        def collect(data: bytes) -> Awaitable[None] | None:
            events = graph.add_lines(data)
            waiting = sink(data) if sink is not None else None  # the sink's backpressure, if any
            if decoded is not None:
                decoded(events)
            return waiting

        try:
            summary = await run_evaluation(self.run_config(), collect, progress=progress, pool=self.pool,
                                           spawned=spawned)
        finally:
            self.last_eval_end = time.monotonic()
        # Built in a thread so that the host keeps answering (queries of the old graph
        # included) meanwhile, ~0.3 s per 100k derivations; nothing else touches this graph.
        index = await trio.to_thread.run_sync(QueryIndex, graph) if self.indexed else None
        self.graph, self.index, self.last_summary = graph, index, summary
        self.evaluations += 1
        self.evaluated_at = time.time()
        return summary

    def stream(self) -> contextlib.AbstractAsyncContextManager[EventStream]:
        """Evaluates, handing out every event as it arrives (single use):

            async with session.stream() as events:
                async for event in events: ...

        Drain it to populate the warm graph; leaving the block early stops the evaluation and
        its workers. An input that cannot load raises InputError, as `evaluate()` does."""
        if self._streamed:
            raise SessionError("Session.stream() can be used once; call diff_once() to evaluate again")
        self._streamed = True

        async def produce(send: Callable[[Decoded], None]) -> None:
            await self._evaluate(None, send, False)

        return stream_events(produce)

    async def query_snapshot(self, flt: Filter | None = None) -> list[Derivation]:
        """Derivations of the warm graph matching `flt` (all when None), ordered by attribute path."""
        if self.graph is None:
            raise SessionError("no warm graph yet: drain stream() (or call evaluate()) first")
        return self.graph.query(flt or Filter())

    async def diff_once(self, sink: EventSink | None = None) -> Diff:
        """Re-evaluates (reading the files as they are now) and compares with the warm graph,
        which the new result then replaces."""
        if self.graph is None:
            raise SessionError("no warm graph to compare with: drain stream() (or call evaluate()) first")
        old = self.graph
        await self.evaluate(sink)
        assert self.graph is not None
        return diff_graphs(old, self.graph)

    def watch(self, extra: tuple[str, ...] = (), initial_sink: EventSink | None = None,
              spawned: list[SpawnedWorker] | None = None, *, debounce: float | None = None,
              ) -> contextlib.AbstractAsyncContextManager[trio.MemoryReceiveChannel[WatchUpdate]]:
        """Evaluates (events to `initial_sink`, with the `spawned` processes), then
        re-evaluates after every change of the input's files (and of the `extra` paths),
        yielding a WatchUpdate (its `diff` as diff_once's) per change; see watch.py.
        WatchError when nothing can be watched."""
        from .watch import DEBOUNCE, watch_session

        return watch_session(self, extra, initial_sink, spawned, debounce=debounce or DEBOUNCE)
