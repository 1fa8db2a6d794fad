"""One client connection: peer check, line reading, concurrent requests, serialised writes.

Requests on one connection run concurrently (up to `max_in_flight`; reading pauses
beyond that), and every message goes out whole under one lock, so notifications and
responses never interleave and a cancelled request never cuts a message in half.

How a connection ends:
- end of input (a client that half-closes, like `socat`): running requests are still
  answered, then it closes;
- the peer is gone (it closed its socket or died, seen as a hang-up even while we only
  wait, or a write fails): its running requests are cancelled at once;
- a client that takes no byte of a message for twice `client_timeout` is gone too (after
  one `client_timeout` its `eval` stream was already ended with an error saying why,
  backpressure.py; the second one is its chance to read it);
- no request running and nothing received for `idle_timeout` seconds: closed, so idle
  clients cannot hold the connection slots for ever;
- daemon shutdown: requests are cancelled (they answer "shutting down") and writes get
  until the grace period ends.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator

import trio

from protocol import framing, rpc
from protocol.endpoint import peer_uid

from evixd.hangup import hung_up, wait_hangup

from .router import Router
from .settings import DaemonSettings

log = logging.getLogger("evix.daemon")

RECEIVE_SIZE = 1 << 16
REFUSAL_TIMEOUT = 1.0
LARGE_MESSAGE = 1 << 16
WRITE_STALLS = 2  # client timeouts without a byte taken before a client is taken for gone
_WRITE_FAILED = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class Connection:
    """Serves one accepted stream until the client leaves or the daemon stops."""

    def __init__(self, stream: trio.SocketStream, router: Router, settings: DaemonSettings) -> None:
        self.stream = stream
        self.router = router
        self.settings = settings
        self.stopping = False
        self.gone = False
        self.abandoned = False  # requests were cancelled because the client went away
        self.bytes_sent = 0
        self._write_lock = trio.Lock()
        self._write_scope: trio.CancelScope | None = None
        self._write_deadline = math.inf  # set by `stop`: writes end with the grace period
        self._in_flight = trio.CapacityLimiter(settings.max_in_flight)
        self._running = 0  # requests started and not finished
        self._scopes: set[trio.CancelScope] = set()  # requests with an id
        self._notifications: set[trio.CancelScope] = set()
        self._read_scope = trio.CancelScope()
        self._idle_scope = trio.CancelScope()  # around each wait for input; its deadline is the idle timeout
        self._drain_scope: trio.CancelScope | None = None  # after end of input: until the last request ends

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

    # ---- reading ----------------------------------------------------------------------
    async def _read_loop(self, nursery: trio.Nursery) -> None:
        frames = framing.LineBuffer(self.settings.max_request_bytes)
        while True:
            data = await self._receive()
            if data is None:
                return
            if not data:
                await self._end_of_input()
                return
            for frame in frames.feed(data):
                if isinstance(frame, framing.FrameTooLarge):
                    log.warning("refused a request over %d bytes", frame.limit)
                    await self.send(rpc.failure(None, rpc.RequestTooLargeError(
                        f"request larger than {frame.limit} bytes; it was skipped", {"limit": frame.limit}
                    )))
                    continue
                token = object()
                await self._in_flight.acquire_on_behalf_of(token)
                self._request_started()
                nursery.start_soon(self._serve, frame, token)

    async def _receive(self) -> bytes | None:
        """The next bytes (b"" at end of input), or None when the connection is over
        (lost, or idle past the idle timeout)."""
        self._idle_scope = trio.CancelScope(deadline=self._idle_deadline())
        with self._idle_scope:
            try:
                return await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost("its connection broke")
                return None
        log.info("closing a connection idle for %g s", self.settings.idle_timeout)
        return None

    async def _end_of_input(self) -> None:
        """The client sent everything: wait for its requests, unless it is gone altogether."""
        if hung_up(self.stream.socket.fileno()):
            self._lost("it closed its connection")
            return
        if self._running == 0:
            return
        self._drain_scope = trio.CancelScope()
        with self._drain_scope:
            await wait_hangup(self.stream.socket.fileno())
            self._lost("it closed its connection")

    def _idle_deadline(self) -> float:
        return trio.current_time() + self.settings.idle_timeout if self._running == 0 else math.inf

    def _request_started(self) -> None:
        self._running += 1
        self._idle_scope.deadline = math.inf

    def _request_finished(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle_scope.deadline = self._idle_deadline()
            if self._drain_scope is not None:
                self._drain_scope.cancel()

    async def _serve(self, line: bytes, token: object) -> None:
        try:
            answer = await self.router.handle_line(line, self)
            if answer is not None:
                await self.send(answer)
        finally:
            self._in_flight.release_on_behalf_of(token)
            self._request_finished()

    # ---- writing ----------------------------------------------------------------------
    async def send(self, message: bytes) -> bool:
        """Writes one message whole; False (and the connection's requests cancelled) once
        the peer is gone."""
        if self.gone:
            return False
        async with self._write_lock:
            if self.gone:
                return False
            # Shielded: a request cancelled mid-message must not leave half a line behind.
            # Bounded all the same: by the client timeout, the shutdown grace, `abort`.
            with trio.CancelScope(shield=True, deadline=self._write_deadline) as scope:
                self._write_scope = scope
                try:
                    if len(message) < LARGE_MESSAGE:
                        written = await self._write_all(framing.encode(message))
                    else:  # a big answer: don't copy megabytes just to append a newline
                        written = await self._write_all(message) and await self._write_all(b"\n")
                except _WRITE_FAILED:
                    written = False
                    self._lost("a write to it failed")
                finally:
                    self._write_scope = None
            if scope.cancelled_caught:
                self._lost("the daemon stopped before it read its answer")
                return False
        return written

    async def _write_all(self, data: bytes) -> bool:
        """Writes `data`; False when the client takes no byte of it for WRITE_STALLS client timeouts."""
        view = memoryview(data)
        patience = WRITE_STALLS * self.settings.client_timeout
        while view:
            with trio.move_on_after(patience):
                sent = await self.stream.socket.send(view)
                view = view[sent:]
                self.bytes_sent += sent
                continue
            self._lost(f"it read nothing for {patience:g} s")
            return False
        return True

    # ---- ending -----------------------------------------------------------------------
    @contextlib.contextmanager
    def request_scope(self, notification: bool = False) -> Iterator[trio.CancelScope]:
        """A cancel scope for one request, cancelled when the peer goes or the daemon stops.
        A notification is carried out even once its sender is gone (nobody awaits an
        answer to it: `printf … | nc -U` may close at once); only a stop cancels it."""
        scope = trio.CancelScope()
        scopes = self._notifications if notification else self._scopes
        if self.stopping or (self.gone and not notification):
            scope.cancel()
        scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            scopes.discard(scope)

    def stop(self, grace: float) -> None:
        """Daemon shutdown: stop reading, cancel running requests (they answer ShuttingDown);
        writes get `grace` seconds more at most."""
        self.stopping = True
        self._write_deadline = trio.current_time() + grace
        if self._write_scope is not None:
            self._write_scope.deadline = min(self._write_scope.deadline, self._write_deadline)
        self._cancel_all()
        for scope in list(self._notifications):
            scope.cancel()

    def abort(self) -> None:
        """Stop now: even a message being written is cut off."""
        self._lost("the daemon is stopping now")
        if self._write_scope is not None:
            self._write_scope.cancel()

    def _lost(self, why: str) -> None:
        if not self.gone:  # a client leaving with nothing running is the normal end: not worth a line
            log.log(logging.INFO if self._scopes else logging.DEBUG,
                    "client gone (%s); cancelling its %d running request(s)", why, len(self._scopes))
        self.abandoned = self.abandoned or bool(self._scopes)
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
