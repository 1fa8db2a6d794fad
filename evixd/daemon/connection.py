"""One client connection: peer check, line reading, concurrent requests, serialised writes.

Requests on one connection run concurrently (up to `max_in_flight`; reading pauses
beyond that), and every message goes out under one lock, so notifications and responses
never interleave. End of input (a client that half-closes, like `socat`) still gets its
answers; a peer that is really gone (a write fails) has its running requests cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import trio

from protocol import framing, rpc

from .router import Router
from .listening_socket import peer_uid

log = logging.getLogger("evix.daemon")

RECEIVE_SIZE = 1 << 16
REFUSAL_TIMEOUT = 1.0
LARGE_MESSAGE = 1 << 16


class Connection:
    """Serves one accepted stream until the client leaves or the daemon stops."""

    def __init__(self, stream: trio.SocketStream, router: Router, *, max_request_bytes: int, max_in_flight: int) -> None:
        self.stream = stream
        self.router = router
        self.max_request_bytes = max_request_bytes
        self.stopping = False
        self.gone = False
        self._write_lock = trio.Lock()
        self._in_flight = trio.CapacityLimiter(max_in_flight)
        self._scopes: set[trio.CancelScope] = set()
        self._read_scope = trio.CancelScope()

    async def run(self) -> None:
        try:
            uid = peer_uid(self.stream.socket)  # type: ignore[arg-type]
            if uid != os.getuid():
                log.warning("refused a connection from uid %d (this daemon serves uid %d)", uid, os.getuid())
                await refuse(self.stream, rpc.ForbiddenError(
                    f"connection refused: uid {uid} may not use the evix daemon of uid {os.getuid()}"
                ))
                return
            async with trio.open_nursery() as nursery:
                with self._read_scope:
                    await self._read_loop(nursery)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(REFUSAL_TIMEOUT):
                await self.stream.aclose()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        frames = framing.LineBuffer(self.max_request_bytes)
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost()
                return
            if not data:
                return  # end of input: requests already running are still answered
            for frame in frames.feed(data):
                if isinstance(frame, framing.FrameTooLarge):
                    log.warning("refused a request over %d bytes", frame.limit)
                    await self.send(rpc.failure(None, rpc.RequestTooLargeError(
                        f"request larger than {frame.limit} bytes; it was skipped", {"limit": frame.limit}
                    )))
                    continue
                token = object()
                await self._in_flight.acquire_on_behalf_of(token)
                nursery.start_soon(self._serve, frame, token)

    async def _serve(self, line: bytes, token: object) -> None:
        try:
            answer = await self.router.handle_line(line, self)
            if answer is not None:
                await self.send(answer)
        finally:
            self._in_flight.release_on_behalf_of(token)

    async def send(self, message: bytes) -> bool:
        """Writes one message; False (and the connection's requests cancelled) once the peer is gone."""
        if self.gone:
            return False
        async with self._write_lock:
            try:
                if len(message) < LARGE_MESSAGE:
                    await self.stream.send_all(framing.encode(message))
                else:  # a big query answer: don't copy megabytes just to append a newline
                    await self.stream.send_all(message)
                    await self.stream.send_all(b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost()
                return False
        return True

    @contextlib.contextmanager
    def request_scope(self) -> Iterator[trio.CancelScope]:
        """A cancel scope for one request, cancelled when the peer goes or the daemon stops."""
        scope = trio.CancelScope()
        if self.stopping or self.gone:
            scope.cancel()
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)

    def stop(self) -> None:
        """Daemon shutdown: stop reading, cancel running requests (they answer ShuttingDown)."""
        self.stopping = True
        self._cancel_all()

    def _lost(self) -> None:
        if not self.gone:
            log.debug("client went away; cancelling its %d running request(s)", len(self._scopes))
        self.gone = True
        self._cancel_all()

    def _cancel_all(self) -> None:
        self._read_scope.cancel()
        for scope in list(self._scopes):
            scope.cancel()


async def refuse(stream: trio.SocketStream, error: rpc.RpcError) -> None:
    """Answers a connection we won't serve with one error (id null), then closes it."""
    with trio.move_on_after(REFUSAL_TIMEOUT):
        try:
            await stream.send_all(framing.encode(rpc.failure(None, error)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    with trio.CancelScope(shield=True), trio.move_on_after(REFUSAL_TIMEOUT):
        await stream.aclose()
