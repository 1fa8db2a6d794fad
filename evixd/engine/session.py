"""The library entry point: a Session evaluates a config once and keeps the graph warm.

    session = await Session.open(EvalConfig(flake=".#hydraJobs", workers=4))
    async with contextlib.aclosing(session.stream()) as events:
        async for event in events:
            print(event)
    linux = await session.query_snapshot(Filter(systems=("x86_64-linux",)))
    changes = await session.diff_once()
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from protocol.config import EvalConfig
from protocol.events import Derivation, Event, event_from_json
from protocol.query import Filter

from .errors import SessionError
from .graph import Diff, Graph, diff_graphs
from .pool import WorkerPool
from .scheduler import EventSink, Scheduler, Summary


class Session:
    """One evaluation config and its warm graph. Not safe for concurrent evaluations."""

    def __init__(self, config: EvalConfig, pool: WorkerPool | None = None) -> None:
        self.config = config
        self.pool = pool
        self.graph: Graph | None = None
        self.last_summary: Summary | None = None
        self._streamed = False

    @classmethod
    async def open(cls, config: EvalConfig, cwd: str | None = None, pool: WorkerPool | None = None) -> Session:
        """Validates `config` and resolves its local paths (against `cwd`); nothing is evaluated yet.

        With a running `pool` (see WorkerPool), workers come from it instead of being spawned."""
        return cls(config.validate().resolved(cwd), pool)

    def reconfigure(self, config: EvalConfig) -> None:
        """Changes how the next evaluation runs (workers, memory, timeout...); what is
        evaluated must stay the same, or the warm graph would no longer match the key."""
        if config.session_key() != self.key:
            raise SessionError("reconfigure may change how a session evaluates, not what")
        self.config = config

    @property
    def key(self) -> str:
        return self.config.session_key()

    async def evaluate(self, sink: EventSink | None = None, *, progress: bool | None = False) -> Summary:
        """Runs one evaluation; every NDJSON chunk goes to `sink`; the result becomes the warm graph."""
        return await self._evaluate(sink, None, progress)

    async def _evaluate(
        self, sink: EventSink | None, decoded: Callable[[list[dict[str, Any]]], None] | None, progress: bool | None
    ) -> Summary:
        """`evaluate`, also handing each chunk's events, as the graph decoded them, to `decoded`."""
        graph = Graph()

        def collect(data: bytes) -> Awaitable[None] | None:
            events = graph.add_lines(data)
            waiting = sink(data) if sink is not None else None  # the sink's backpressure, if any
            if decoded is not None:
                decoded(events)
            return waiting

        summary = await Scheduler(self.config, collect, progress=progress, pool=self.pool).run()
        self.graph, self.last_summary = graph, summary
        return summary

    async def stream(self) -> AsyncIterator[Event]:
        """Evaluates and yields every event (single use). Drain it to populate the warm graph;
        wrap it in `contextlib.aclosing` if you may stop early."""
        if self._streamed:
            raise SessionError("Session.stream() can be used once; call diff_once() to evaluate again")
        self._streamed = True
        send, receive = trio.open_memory_channel[list[dict[str, Any]]](math.inf)

        async def produce() -> None:
            async with send:
                await self._evaluate(None, send.send_nowait, False)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                async for events in receive:
                    for event in events:
                        yield event_from_json(event)

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
