"""The daemon's `watch`: one watcher and one evaluation per config, shared by its subscribers.

A hub exists while someone watches its config (and its `--watch` paths): the first
subscriber starts it, the last one to leave (a disconnect cancels its request) stops it and
its inotify watches. The hub evaluates into the config's warm session of the registry, so
`query` answers from the latest state, and hands each subscriber, in order:
- the events of the first evaluation (a subscriber that joins later gets the warm graph's
  derivation and error events instead: no second evaluation);
- one diff per change (`watchDiff` notifications), the same for every subscriber.

A subscriber that lets MAX_PENDING messages pile up is dropped (its request answers
SlowClientError); the others are not slowed down by it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from protocol import rpc
from protocol.config import EvalConfig
from protocol.events import error_event, parse_attr

from evixd.engine.errors import SessionError
from evixd.engine.graph import Graph
from evixd.engine.reevaluation import WatchUpdate, evaluate_compared, failure_diff
from evixd.engine.session import Session
from evixd.engine.watch import DEBOUNCE, run_watch
from evixd.engine.watch_paths import WatchTargets, check_watchable, watch_targets
from .sessions import SessionRegistry

log = logging.getLogger("evix.daemon")

MAX_PENDING = 4096  # messages waiting for one subscriber before it is dropped

Message = tuple[str, bytes | WatchUpdate]  # ("events", ndjson) or ("diff", update)


@dataclass(eq=False)
class Subscriber:
    """One `watch` request: what waits to be sent to it."""

    send: trio.MemorySendChannel[Message]
    receive: trio.MemoryReceiveChannel[Message]
    dropped: bool = False

    def put(self, message: Message) -> None:
        try:
            self.send.send_nowait(message)
        except trio.WouldBlock:
            log.warning("a watch subscriber read nothing of %d messages: dropping it", MAX_PENDING)
            self.dropped = True
            self.send.close()
        except trio.ClosedResourceError:
            pass


@dataclass(eq=False)
class WatchHub:
    """The watcher of one (config, extra paths) and its subscribers."""

    config: EvalConfig
    extra: tuple[str, ...]
    registry: SessionRegistry
    debounce: float
    subscribers: set[Subscriber] = field(default_factory=set)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    lock: trio.Lock = field(default_factory=trio.Lock)  # an evaluation, or a subscriber joining
    failed: bool = False  # the watch itself failed (logged): its subscribers are told

    def subscribe(self) -> Subscriber:
        send, receive = trio.open_memory_channel[Message](MAX_PENDING)
        subscriber = Subscriber(send, receive)
        self.subscribers.add(subscriber)
        return subscriber

    async def join(self) -> Subscriber:
        """A subscriber after the first one: it gets the warm graph's events, then the diffs."""
        async with self.lock:
            subscriber = self.subscribe()
            entry = self.registry.peek(self.config.session_key())
            if entry is not None and entry.session.graph is not None:
                subscriber.put(("events", snapshot_events(entry.session.graph)))
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        subscriber.send.close()
        if not self.subscribers:
            log.info("nobody watches %s any more: watcher stopped", self.config.describe())
            self.scope.cancel()

    def _broadcast(self, message: Message) -> None:
        for subscriber in list(self.subscribers):
            subscriber.put(message)

    async def run(self) -> None:
        """Watches and evaluates until the last subscriber leaves."""
        try:
            with self.scope:
                targets = functools.partial(watch_targets, self.config, self.extra)
                await run_watch(targets, self._first, self._again, debounce=self.debounce)
        finally:
            entry = self.registry.get(self.config.session_key())
            if entry is not None:  # a plain `eval` of it follows flake.lock again
                entry.session.input_overrides = ()

    async def _first(self, targets: WatchTargets) -> None:
        async with self.lock:
            update = await self._evaluate(targets, self._events_sink)
        if update is not None:  # it failed (a good first evaluation is no change)
            self._broadcast(("diff", update))

    async def _again(self, targets: WatchTargets) -> None:
        async with self.lock:
            update = await self._evaluate(targets, None)
        assert update is not None
        self._broadcast(("diff", update))

    def _events_sink(self, data: bytes) -> None:
        self._broadcast(("events", data))

    async def _evaluate(self, targets: WatchTargets, sink: Callable[[bytes], None] | None) -> WatchUpdate | None:
        """One evaluation into the registry's session, compared with its warm graph (empty
        when it has none); the first one (`sink` set: its events are sent) is not compared."""
        registry, config = self.registry, self.config

        async def run(session: Session) -> WatchUpdate | None:
            session.input_overrides = targets.overrides
            return await evaluate_compared(session, sink, compare=sink is None)

        entry = registry.ensure_entry(config)
        try:
            if entry.session.graph is not None and sink is None:
                return await registry.reevaluate(entry, config, run)
            return (await registry.evaluate_with(config, run))[1]
        except SessionError:  # dropped meanwhile: the next change starts a new session
            error = SessionError("the session was dropped while it was evaluated")
            return WatchUpdate(failure_diff(error), None, error)


def snapshot_events(graph: Graph) -> bytes:
    """The warm graph as events: its derivations' lines as printed, then its errors."""
    lines = [r.line for r in graph.sorted_records()]
    lines += [error_event(attr, tuple(parse_attr(attr)), error) for attr, error in sorted(graph.errors.items())]
    return b"\n".join(lines) + b"\n" if lines else b""


class WatchHubs:
    """The running hubs, by (session key, extra paths)."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self.hubs: dict[tuple[str, tuple[str, ...]], WatchHub] = {}

    async def serve(self, config: EvalConfig, extra: tuple[str, ...], debounce: float | None, rid: object,
                    send: Callable[[bytes], Awaitable[bool]]) -> None:
        """Streams `config`'s events and diffs to one subscriber until it goes away (the
        hub's `debounce` is its first subscriber's)."""
        key = (config.session_key(), tuple(sorted(extra)))
        hub = self.hubs.get(key)
        if hub is None or hub.scope.cancel_called:  # (a hub whose last subscriber just left is ending)
            check_watchable(config)  # WatchError: nothing to watch
            hub = self.hubs[key] = WatchHub(config, extra, self.registry, debounce or DEBOUNCE)
            subscriber = hub.subscribe()
            self.registry.spawn(self._host, key, hub)
        else:
            subscriber = await hub.join()
        try:
            async for kind, payload in subscriber.receive:
                if not await send(_message(kind, payload, rid, key[0])):
                    return
            if hub.failed:
                raise rpc.InternalRpcError("the watch failed (details are in the daemon's log)")
            if subscriber.dropped:
                raise rpc.SlowClientError(f"this watch read none of its last {MAX_PENDING} messages, so it was ended")
        finally:
            hub.leave(subscriber)

    async def _host(self, key: tuple[str, tuple[str, ...]], hub: WatchHub) -> None:
        try:
            await hub.run()
        except Exception:
            log.exception("watching %s failed", hub.config.describe())
            hub.failed = True
        finally:
            if self.hubs.get(key) is hub:
                del self.hubs[key]
            for subscriber in list(hub.subscribers):  # the watch ended on its own (an error)
                subscriber.send.close()


def _message(kind: str, payload: bytes | WatchUpdate, rid: object, session: str) -> bytes:
    if isinstance(payload, WatchUpdate):
        summary = payload.summary.to_json() if payload.summary is not None else None
        return rpc.watch_diff_notification(rid, payload.diff.to_json(), summary, session)
    return rpc.events_notification(rid, payload)

