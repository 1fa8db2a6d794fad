"""The events of one `eval` on their way to its client, in a bounded buffer.

The scheduler hands each batch's NDJSON to `EventStream.put` and a forwarder sends it on
as `events` notifications. Past `limit` bytes waiting, `put` returns an awaitable and the
scheduler waits on it before it takes in more: a client that reads slowly slows its own
evaluation down, and the daemon holds at most `limit` bytes for it (plus the batch being
taken in), never its whole output. A client that takes nothing for `stall_timeout`
seconds while the buffer is full has its stream ended: what waits is dropped, the
evaluation is cancelled (`run_scope`), and the request answers SlowClientError.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import trio

log = logging.getLogger("evix.daemon")

Send = Callable[[bytes], Awaitable[bool]]  # one events chunk out; False once the peer is gone


class EventStream:
    """NDJSON bytes waiting for one client, at most `limit` of them (see the module docstring)."""

    def __init__(self, limit: int, stall_timeout: float) -> None:
        self.limit = limit
        self.stall_timeout = stall_timeout
        self.run_scope = trio.CancelScope()  # around the evaluation; cancelled when the client stalls
        self.stalled = False
        self.waiting = 0  # scheduler slots waiting for the client to make room
        self._taken_at = trio.current_time()  # when the client last made room
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._closed = False
        self._changed = trio.Event()  # set on every put, take and close

    @property
    def size(self) -> int:
        """Bytes waiting to be sent."""
        return self._size

    def put(self, data: bytes) -> Awaitable[None] | None:
        """The scheduler's sink: queues `data`; past the limit, an awaitable that waits for room."""
        if self._closed:
            return None
        self._chunks.append(data)
        self._size += len(data)
        self._wake()
        return _Later(self._room) if self._size >= self.limit else None

    async def _room(self) -> None:
        self.waiting += 1
        try:
            while self._size >= self.limit and not self._closed:
                deadline = self._taken_at + self.stall_timeout
                if trio.current_time() >= deadline:
                    self._stall()
                    return
                changed = self._changed
                with trio.move_on_at(deadline):
                    await changed.wait()
        finally:
            self.waiting -= 1

    def _stall(self) -> None:
        log.warning("a client read no events for %g s with %d KiB waiting: ending its stream",
                    self.stall_timeout, self._size >> 10)
        self.stalled = True
        self.close()
        self.run_scope.cancel()

    async def forward(self, send: Send, max_chunk: int,
                      wrap: Callable[[bytes], bytes]) -> None:
        """Sends what is queued, merged into chunks of about `max_chunk` bytes, each wrapped by
        `wrap` into one message, until closed and drained (or the peer is gone)."""
        while True:
            chunk = await self._take(max_chunk)
            if chunk is None:
                return
            if not await send(wrap(chunk)):
                self.close()
                return

    async def _take(self, max_chunk: int) -> bytes | None:
        while not self._chunks:
            if self._closed:
                return None
            changed = self._changed
            await changed.wait()
        parts, size = [], 0
        while self._chunks and (not parts or size + len(self._chunks[0]) <= max_chunk):
            part = self._chunks.popleft()
            parts.append(part)
            size += len(part)
        self._size -= size
        self._taken_at = trio.current_time()
        self._wake()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """No more events: the forwarder ends after what is queued (a stall drops it first)."""
        self._closed = True
        if self.stalled:
            self._chunks.clear()
            self._size = 0
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class _Later:
    """An awaitable that creates its coroutine only when awaited (none is left un-awaited
    when a caller drops it)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._fn = fn

    def __await__(self) -> Generator[Any, None, None]:
        return self._fn().__await__()


class EventStreams:
    """The live streams of a daemon, for `status`."""

    def __init__(self) -> None:
        self.live: set[EventStream] = set()

    def to_json(self) -> dict[str, int]:
        return {
            "streams": len(self.live),
            "bufferedBytes": sum(s.size for s in self.live),
            "waitingForClient": sum(1 for s in self.live if s.waiting),
        }
