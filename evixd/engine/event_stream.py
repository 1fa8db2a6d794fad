"""Events handed to an `async for` as they arrive, from an evaluation running in the background.

An async generator must not yield from inside a nursery (trio's rule, PEP 789): the
consumer's code would run inside the generator's nursery, and an error of the background
task would reach the consumer wrapped in an ExceptionGroup. So the background task lives in
a nursery that the consumer's own `async with` enters and leaves (a context manager's yield
is the one place where that is structured), and what crosses over is a channel.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from protocol.events import Event, event_from_json

Decoded = list[dict[str, Any]]
"""One chunk of events, as the graph decoded them."""


class EventStream:
    """The events of one evaluation, in arrival order. The evaluation's error (InputError
    when the input cannot load) is raised after the last event that preceded it."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Decoded]) -> None:
        self._receive = receive
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self.error: Exception | None = None  # set by the producer; cleared once raised

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            try:
                self._pending.extend(await self._receive.receive())
            except trio.EndOfChannel:
                self.raise_error()
                raise StopAsyncIteration from None
        return event_from_json(self._pending.popleft())

    def raise_error(self) -> None:
        """Raises the producer's error if it has not been raised yet."""
        error, self.error = self.error, None
        if error is not None:
            raise error


Producer = Callable[[Callable[[Decoded], None]], Awaitable[object]]
"""Runs an evaluation, handing each chunk of its events to the callable it is given."""


@contextlib.asynccontextmanager
async def stream_events(produce: Producer) -> AsyncIterator[EventStream]:
    """Runs `produce(send)` for as long as the block lasts; what it sends comes out of the
    EventStream. Leaving the block early cancels it (its workers are reaped before the block
    ends); its error is raised plainly, never as an ExceptionGroup."""
    send, receive = trio.open_memory_channel[Decoded](math.inf)
    events = EventStream(receive)

    async def run() -> None:
        with send:  # closing it ends the consumer's iteration
            try:
                await produce(send.send_nowait)
            except Exception as e:  # handed over in order, after the events before it
                events.error = e

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            yield events  # (the receiving end stays open: a late event is never an error)
            nursery.cancel_scope.cancel()  # the consumer stopped early: so does the evaluation
        events.raise_error()  # the consumer left without reaching it: never lost
    except BaseExceptionGroup as group:  # the nursery wraps whatever left the block
        error = _unwrapped(group)
        raise error from error.__cause__


def _unwrapped(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside `group` (several cancellations are one), else the group."""
    leaves = _leaves(group)
    if len(leaves) == 1 or all(isinstance(e, trio.Cancelled) for e in leaves):
        return leaves[0]
    return group


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in _leaves(sub)]
    return [error]
