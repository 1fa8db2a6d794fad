"""One master's connection to `evix worker --listen`: the handshake, then the master's batches
relayed to an evaluation worker of this machine, and its answers back.

The evaluator is a local worker exactly as `evix eval` runs them (evixd.engine: forked from a
template that loaded the input once, watched for its memory limit and per-item timeout), so a
remote worker dies, recycles and restarts like a local one. When it dies the master hears
`Died` (with the item it was on) and this relay drops the batches already sent until the
master's `Reset`, which forks a new evaluator on the same connection.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import trio

from evixd.engine.errors import WorkerStartError
from evixd.engine.framed_stream import NETWORK_ERRORS, FramedStream
from evixd.engine.local_worker import LocalWorker, SpawnedWorkers
from evixd.engine.template import ForkedWorkers
from evixd.engine.worker import WorkerDied
from protocol import remote_wire as rw
from protocol import wire
from protocol.config import ConfigError, EvalConfig
from protocol.remote_setup import accept_master_config, token_matches

from .sources import SourceCache, SourceError

log = logging.getLogger("evix.remote")

ALIVE_PERIOD = 1.0  # seconds between Alive messages: the master's stall timer hears them


@dataclass(frozen=True)
class ServiceSettings:
    token: str | None  # None: any master (the insecure flag)
    max_memory_mb: int
    handshake_timeout: float
    sources: SourceCache


class ConnectionEnds(Exception):
    """The conversation is over (`reason` for the log; None: a normal end)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


class Outcome(enum.Enum):
    RESET = "reset"
    FRESH = "fresh"
    DIED = "died"


class Relay:
    """Serves one connection until the master's Shutdown, its end of the stream, or an error."""

    def __init__(self, conn: FramedStream, settings: ServiceSettings, peer: str) -> None:
        self.conn = conn
        self.settings = settings
        self.peer = peer
        self._requests_send, self._requests = trio.open_memory_channel[rw.RemoteRequest](8)

    async def run(self) -> None:
        """Raises ConnectionEnds (or a network error) when the conversation ends otherwise
        than by the master's Shutdown; trio.TooSlowError when no hello comes in time."""
        with trio.fail_after(self.settings.handshake_timeout):
            hello = await self._receive_hello()
        config = await self._accept(hello)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_requests, nursery.cancel_scope)
            nursery.start_soon(self._keep_alive)
            try:
                async with self._evaluators(config, nursery) as source:
                    await self._serve(source, hello, config)
            finally:
                nursery.cancel_scope.cancel()

    # ---- handshake --------------------------------------------------------------------
    async def _receive(self) -> rw.RemoteRequest:
        try:
            return rw.decode_request(await self.conn.receive())
        except EOFError:
            raise ConnectionEnds() from None
        except wire.ProtocolError as e:
            raise ConnectionEnds(f"not the evix remote protocol ({e})") from None

    async def _receive_chunk(self) -> rw.RemoteRequest:
        """A piece of a shipped tree: each must come within the handshake timeout."""
        with trio.fail_after(self.settings.handshake_timeout):
            return await self._receive()

    async def _refuse(self, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.conn.send(rw.encode_response(rw.Refused(message)))
        raise ConnectionEnds(f"refused: {message}")

    async def _receive_hello(self) -> rw.Hello:
        hello = await self._receive()
        if not isinstance(hello, rw.Hello):
            raise ConnectionEnds(f"expected hello first, got {type(hello).__name__}")
        if not token_matches(self.settings.token, hello.token):
            await self._refuse("remote worker authentication failed (wrong or missing token)")
        if hello.protocol_version != rw.REMOTE_PROTOCOL_VERSION:
            await self._refuse(f"protocol version mismatch: master speaks {hello.protocol_version}, "
                               f"this worker {rw.REMOTE_PROTOCOL_VERSION}")
        return hello

    async def _accept(self, hello: rw.Hello) -> EvalConfig:
        try:
            config = accept_master_config(EvalConfig.from_json(orjson.loads(hello.config)), self.settings.max_memory_mb)
            config.validate()
        except (ConfigError, orjson.JSONDecodeError) as e:
            await self._refuse(str(e))
        if hello.source_hash and not await self.settings.sources.same_here(
                hello.source_hash, hello.source_name, config.flake is not None):
            try:
                root = self.settings.sources.get(hello.source_hash, hello.source_name)
                if root is None:
                    await self.conn.send(rw.encode_response(rw.NeedSource()))
                    root = await self.settings.sources.receive(hello.source_hash, hello.source_name, self._receive_chunk)
            except SourceError as e:
                await self._refuse(str(e))
            config = self.settings.sources.rebase(config, hello.source_name, root)
        return config

    @contextlib.asynccontextmanager
    async def _evaluators(self, config: EvalConfig, nursery: trio.Nursery) -> AsyncIterator[ForkedWorkers]:
        source = ForkedWorkers(config, nursery, SpawnedWorkers(config, nursery))
        try:
            yield source
        finally:
            with trio.CancelScope(shield=True):
                await source.aclose()

    # ---- the conversation -------------------------------------------------------------
    async def _read_requests(self, stop: trio.CancelScope) -> None:
        """The master's requests, in order, to the driver; when the master is gone (or sends
        what is not a request) the whole connection stops, its evaluator too."""
        async with self._requests_send:
            while True:
                try:
                    msg = await self._receive()
                except ConnectionEnds as end:
                    if end.reason:
                        log.warning("%s: %s; connection closed", self.peer, end.reason)
                    stop.cancel()
                    return
                except NETWORK_ERRORS as e:
                    log.warning("%s: %s; connection closed", self.peer, e)
                    stop.cancel()
                    return
                if not isinstance(msg, (wire.Work, rw.Reset, rw.Shutdown)):
                    log.warning("%s: unexpected %s; connection closed", self.peer, type(msg).__name__)
                    stop.cancel()
                    return
                await self._requests_send.send(msg)
                if isinstance(msg, rw.Shutdown):
                    return

    async def _keep_alive(self) -> None:
        alive = rw.encode_response(rw.Alive())
        while True:
            await trio.sleep(ALIVE_PERIOD)
            try:
                await self.conn.send(alive)
            except Exception:
                return

    async def _next_request(self) -> rw.RemoteRequest:
        try:
            return await self._requests.receive()
        except trio.EndOfChannel:
            raise ConnectionEnds() from None

    async def _serve(self, source: ForkedWorkers, hello: rw.Hello, config: EvalConfig) -> None:
        """Evaluator after evaluator until the master is done: one per Reset."""
        fresh, first = False, True
        while True:
            try:
                async with source.open(fresh=fresh) as worker:
                    if first:
                        await self._ready(worker, hello, config)
                        first = False
                    outcome = await self._drive(worker)
            except WorkerStartError as e:
                if first and e.fatal:
                    await self.conn.send(rw.encode_response(wire.Fatal(str(e))))
                    raise ConnectionEnds(f"the input cannot be loaded here: {e}") from None
                if first:
                    await self._refuse(f"{rw.UNAVAILABLE}cannot start an evaluator: {e}")
                raise ConnectionEnds(f"cannot start an evaluator: {e}") from None
            if outcome is Outcome.DIED:
                outcome = await self._await_reset()
            fresh = outcome is Outcome.FRESH

    async def _ready(self, worker: LocalWorker, hello: rw.Hello, config: EvalConfig) -> None:
        ready = worker.ready
        assert ready is not None
        if hello.store_dir and ready.store_dir and hello.store_dir != ready.store_dir:
            await self._refuse(f"store directory mismatch: the master's is {hello.store_dir}, this worker's "
                               f"{ready.store_dir} (drvPaths would differ)")
        await self.conn.send(rw.encode_response(wire.Ready(rw.REMOTE_PROTOCOL_VERSION, ready.nix_version, ready.pid,
                                                           ready.store_dir)))
        log.info("%s: serving %s (evaluator %d)", self.peer, config.describe(), ready.pid)

    async def _await_reset(self) -> Outcome:
        """After a death: the batches the master sent meanwhile are dropped (it requeues them)."""
        while True:
            msg = await self._next_request()
            if isinstance(msg, rw.Reset):
                return Outcome.FRESH if msg.fresh else Outcome.RESET
            if isinstance(msg, rw.Shutdown):
                raise ConnectionEnds()

    async def _drive(self, worker: LocalWorker) -> Outcome:
        """Batches to `worker` as they come, answers back in order, until a Reset or its death."""
        pending: collections.deque[int] = collections.deque()
        try:
            while True:
                msg = self._take_nowait()
                if msg is None and not pending:
                    msg = await self._next_request()
                if msg is not None:
                    outcome = await self._handle(worker, msg, pending)
                    if outcome is not None:
                        return outcome
                    continue
                result = await worker.receive_result(pending[0])
                pending.popleft()
                await self.conn.send(rw.encode_response(result))
        except WorkerDied as died:
            head = pending[0]
            await self.conn.send(rw.encode_response(rw.Died(head, worker.in_flight(head), died.reason, died.memory,
                                                            died.innocent)))
            log.info("%s: evaluator %d died (%s)", self.peer, worker.pid, died.reason)
            return Outcome.DIED

    def _take_nowait(self) -> rw.RemoteRequest | None:
        try:
            return self._requests.receive_nowait()
        except trio.WouldBlock:
            return None
        except trio.EndOfChannel:
            raise ConnectionEnds() from None

    async def _handle(self, worker: LocalWorker, msg: rw.RemoteRequest, pending: collections.deque[int]) -> Outcome | None:
        if isinstance(msg, wire.Work):
            pending.append(msg.batch)
            await worker.send_batch(msg.batch, msg.items)
            return None
        if isinstance(msg, rw.Reset):
            if pending:
                raise ConnectionEnds("reset while batches were still evaluating")
            return Outcome.FRESH if msg.fresh else Outcome.RESET
        raise ConnectionEnds()  # Shutdown
