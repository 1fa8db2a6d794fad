"""A remote worker: one connection to `evix worker --listen`, seen from the master.

Each connection of `--remote ENDPOINT SYSTEMS N` is a WorkerSource of its own (a scheduler
slot), pulling from the run's one queue like a local worker. The connection outlives the
evaluators behind it: after a death or a recycle the next `open()` sends Reset and the
service forks a new evaluator, as a local slot forks a new worker. A connection that breaks
or stays silent past the stall timeout is reconnected with backoff; its batches go back
to the queue (no item is blamed: only the service can say where its evaluator crashed).
A remote that fails MAX_FAILED_CONNECTIONS times in a row before finishing any item (it
crashes on every connection, its evaluator cannot start) retires its slot, as an
unreachable one does, instead of being retried for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator

import trio

from protocol import remote_wire as rw
from protocol import wire
from protocol.config import EvalConfig
from protocol.remotes import TOKEN_ENV
from protocol.remotes import Remote, split_endpoint

from .errors import EvixError, RemoteUnreachable, WorkerStartError
from .framed_stream import NETWORK_ERRORS, FramedStream, tune_socket
from .remote_sources import RemoteInput
from .remote_tls import PinMismatch, client_tls, verify_pin
from .worker import Worker, WorkerDied, WorkerSource

log = logging.getLogger("evix.remote")

CONNECT_TIMEOUT = 10.0
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)  # backoff between attempts; after the last one the slot gives up
MAX_FAILED_CONNECTIONS = 3
"""Connections of a slot (or evaluators behind one) in a row that end, with nothing blamed,
before the remote finishes any item: then the slot retires."""


def master_store_dir() -> str:
    """Where this machine's Nix keeps its store, as Nix decides it (the master loads no Nix)."""
    return os.environ.get("NIX_STORE_DIR") or os.environ.get("NIX_STORE") or "/nix/store"


class ServiceBusy(OSError):
    """The service is at its connection limit: tried again, like a refused connection."""


class ServiceUnavailable(Exception):
    """The service took the connection but cannot serve it (its evaluator cannot start): a
    failed connection, tried again up to MAX_FAILED_CONNECTIONS times in a row."""


class Link:
    """One live connection, after a successful hello."""

    def __init__(self, conn: FramedStream) -> None:
        self.conn = conn
        self.broken = False
        self.used = False  # its current evaluator has been sent work: the next open resets it


class RemoteWorker(Worker):
    """The evaluator currently behind a Link."""

    def __init__(self, connection: RemoteConnection, link: Link) -> None:
        self.connection = connection
        self.link = link
        self.systems = connection.systems
        self._died_at: dict[int, int | None] = {}

    @property
    def name(self) -> str:
        return self.connection.name

    def _gone(self, why: str) -> WorkerDied:
        """The connection is unusable: its batches go back to the queue (nobody blamed), the
        slot reconnects."""
        self.link.broken = True
        reason = f"remote worker {self.connection.remote.endpoint} {why}"
        log.warning("%s: %s; its work goes back to the queue, reconnecting", self.name, reason)
        self.connection.failed(why)
        return WorkerDied(reason, innocent=True)

    async def send_batch(self, batch: int, items: bytes) -> None:
        self.link.used = True
        try:
            await self.link.conn.send(rw.encode_request(wire.Work(batch, items)))
        except NETWORK_ERRORS as e:
            raise self._gone(f"connection lost ({e})") from None

    async def receive_result(self, batch: int) -> wire.Result:
        stall = self.connection.config.remote_stall_timeout
        while True:
            with trio.move_on_after(stall):
                try:
                    msg = rw.decode_response(await self.link.conn.receive())
                except EOFError:
                    raise self._gone("closed the connection") from None
                except wire.ProtocolError as e:
                    raise self._gone(f"sent a malformed message ({e})") from None
                except NETWORK_ERRORS as e:
                    raise self._gone(f"connection lost ({e})") from None
                if isinstance(msg, rw.Alive):
                    continue
                if isinstance(msg, wire.Result) and msg.batch == batch:
                    self.connection.finished()
                    return msg
                if isinstance(msg, rw.Died) and msg.batch == batch:
                    self._died_at[batch] = msg.in_flight
                    if msg.innocent:  # nothing blamed, nothing done: as a failed connection
                        self.connection.failed(msg.reason)
                    raise WorkerDied(f"{msg.reason} (on remote worker {self.connection.remote.endpoint})",
                                     memory=msg.memory, innocent=msg.innocent)
                raise self._gone(f"answered batch {batch} with {type(msg).__name__}")
            raise self._gone(f"stopped answering (silent for {stall:g} s)")

    def in_flight(self, batch: int) -> int | None:
        return self._died_at.get(batch)


class RemoteConnection(WorkerSource):
    """Connection `index` of a `--remote`: a slot's workers, one evaluator after another."""

    def __init__(self, remote: Remote, index: int, config: EvalConfig, inputs: RemoteInput) -> None:
        self.remote = remote
        self.index = index
        self.config = config
        self.inputs = inputs
        self.name = f"remote {remote.endpoint} #{index + 1}"
        self._link: Link | None = None
        self._failures = 0  # in a row, since the remote last finished an item
        self._last_failure = ""

    @property
    def systems(self) -> frozenset[str] | None:
        return self.remote.owns

    def failed(self, why: str) -> None:
        """A connection, or an evaluator behind it, ended before finishing any item."""
        self._failures += 1
        self._last_failure = why

    def finished(self) -> None:
        """The remote answered a batch: it works, earlier failures no longer count."""
        self._failures = 0

    def _give_up_if_failing(self) -> None:
        """RemoteUnreachable (the slot retires) after MAX_FAILED_CONNECTIONS failures in a row."""
        if self._failures >= MAX_FAILED_CONNECTIONS:
            raise RemoteUnreachable(f"remote worker {self.remote.endpoint} failed {self._failures} times in a row "
                                    f"before finishing any item (last: {self._last_failure})")

    @contextlib.asynccontextmanager
    async def open(self, *, fresh: bool = False) -> AsyncIterator[RemoteWorker]:
        self._give_up_if_failing()
        if self._failures:  # a remote that just failed gets a moment before the next try
            await trio.sleep(RECONNECT_DELAYS[self._failures - 1])  # _failures < MAX_FAILED_CONNECTIONS here
        link = self._link
        if link is not None and link.broken:
            await self._drop()
            link = None
        if link is None:
            link = self._link = await self._connect_with_backoff()
        elif link.used:  # its evaluator has had work: a new one (an unused one is as fresh as a new one)
            try:
                await link.conn.send(rw.encode_request(rw.Reset(fresh)))
            except NETWORK_ERRORS:
                await self._drop()
                link = self._link = await self._connect_with_backoff()
        link.used = False
        yield RemoteWorker(self, link)

    async def _connect_with_backoff(self) -> Link:
        why = ""
        for delay in (0.0, *RECONNECT_DELAYS):
            await trio.sleep(delay)
            try:
                return await self._connect()
            except (PinMismatch, ssl.SSLCertVerificationError) as e:  # not a network fault: never retried
                raise WorkerStartError(f"remote worker {self.remote.endpoint}: {e}", fatal=True) from None
            except ServiceUnavailable as e:
                why = str(e)
                log.info("%s: %s", self.name, why)
                self.failed(why)
                self._give_up_if_failing()
            except (trio.TooSlowError, EOFError, wire.ProtocolError, *NETWORK_ERRORS) as e:
                why = _describe(e)
                log.info("%s: cannot connect: %s", self.name, why)
        raise RemoteUnreachable(f"remote worker {self.remote.endpoint} unreachable: {why}")

    async def _connect(self) -> Link:
        host, port = split_endpoint(self.remote.endpoint)
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(host, port)
        tune_socket(stream.socket)
        transport: trio.abc.Stream = stream
        try:
            tls = client_tls(self.config)
            if tls is not None:
                transport = trio.SSLStream(stream, tls, server_hostname=host)
                with trio.fail_after(CONNECT_TIMEOUT):
                    await transport.do_handshake()
                verify_pin(transport, self.config)
            conn = FramedStream(transport, rw.MAX_REMOTE_FRAME_BYTES)
            await self._hello(conn)
            return Link(conn)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(transport)
            raise

    async def _hello(self, conn: FramedStream) -> None:
        token = self.config.remote_token or os.environ.get(TOKEN_ENV) or ""
        try:
            config_json, digest, root = await self.inputs.hello_fields()
        except EvixError as e:
            raise WorkerStartError(str(e), fatal=True) from None
        await conn.send(rw.encode_request(rw.Hello(rw.REMOTE_PROTOCOL_VERSION, token, master_store_dir(),
                                                   config_json, digest, root)))
        while True:
            with trio.fail_after(self.config.remote_stall_timeout):
                msg = rw.decode_response(await conn.receive())
            if isinstance(msg, rw.Alive):
                continue
            if isinstance(msg, rw.NeedSource) and digest:
                await self.inputs.send_source(conn)
                continue
            if isinstance(msg, wire.Ready):
                log.info("%s: ready (Nix %s, evaluator %d)", self.name, msg.nix_version, msg.pid)
                return
            if isinstance(msg, rw.Refused) and msg.message.startswith(rw.BUSY):
                raise ServiceBusy(msg.message.removeprefix(rw.BUSY))
            if isinstance(msg, rw.Refused) and msg.message.startswith(rw.UNAVAILABLE):
                raise ServiceUnavailable(msg.message.removeprefix(rw.UNAVAILABLE))
            if isinstance(msg, rw.Refused):
                raise WorkerStartError(f"remote worker {self.remote.endpoint} refused: {msg.message}", fatal=True)
            if isinstance(msg, wire.Fatal):
                raise WorkerStartError(f"{msg.message}\n(on remote worker {self.remote.endpoint})", fatal=True)
            raise wire.ProtocolError(f"unexpected {type(msg).__name__} during the handshake")

    async def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.conn.aclose()

    async def aclose(self) -> None:
        """Says Shutdown (the service stops its evaluator) and closes the connection."""
        link = self._link
        if link is not None and not link.broken:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                with contextlib.suppress(*NETWORK_ERRORS):
                    await link.conn.send(rw.encode_request(rw.Shutdown()))
        await self._drop()


def _describe(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(error, EOFError):
        return "the connection closed during the handshake (a TLS port? then give --remote-tls-ca)"
    if isinstance(error, trio.BrokenResourceError) and error.__cause__ is not None:
        error = error.__cause__
    return str(error) or type(error).__name__
