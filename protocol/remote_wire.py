"""Messages between a master and `evix worker --listen` (schema/worker.capnp, `Remote*`).

The conversation of one connection (docs/protocol.md, "Remote workers"):

    master -> service   Hello(protocol version, token, store dir, config[, source hash])
    service -> master   NeedSource (then the master sends the tree as SourceChunks),
                        then Ready | Refused | Fatal
    master -> service   Work (pipelined, as to a local worker), Reset (a new evaluator after a
                        death or a recycle), Shutdown
    service -> master   Result (its `recycle` is the status "restart") | Died, and Alive every
                        second, so that a silent service is known to have stalled

Frames are wire.py's (standard Cap'n Proto stream framing); every frame read from the
network is capped (`MAX_REMOTE_FRAME_BYTES`). Readers never leave this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import wire
from .wire import Fatal, ProtocolError, Result, Shutdown, Work

REMOTE_PROTOCOL_VERSION = 1
MAX_REMOTE_FRAME_BYTES = 64 << 20  # a batch's events are far smaller; shipped trees come in chunks
SOURCE_CHUNK_BYTES = 4 << 20
MAX_SOURCE_BYTES = 512 << 20  # a shipped tree, packed: masters refuse to send more, services to take more
_TRAVERSAL_LIMIT_WORDS = MAX_REMOTE_FRAME_BYTES // 8
BUSY = "busy: "
"""How a `refused` message begins when the service is only full (the master retries later)."""
UNAVAILABLE = "unavailable: "
"""How a `refused` message begins when the service cannot serve for a reason of its own (its
evaluator cannot start): not the master's fault, the master tries again a few times and then
goes on without that remote."""


@dataclass(frozen=True)
class Hello:
    protocol_version: int
    token: str
    store_dir: str
    config: bytes
    source_hash: str = ""
    source_name: str = ""


@dataclass(frozen=True)
class Reset:
    fresh: bool = False


@dataclass(frozen=True)
class SourceChunk:
    data: bytes
    last: bool


@dataclass(frozen=True)
class Refused:
    message: str


@dataclass(frozen=True)
class Died:
    batch: int
    in_flight: int | None
    reason: str
    memory: bool = False
    innocent: bool = False


@dataclass(frozen=True)
class Alive:
    pass


@dataclass(frozen=True)
class NeedSource:
    pass


RemoteRequest = Hello | Work | Reset | Shutdown | SourceChunk
RemoteResponse = wire.Ready | Refused | Result | Died | Alive | NeedSource | Fatal


def encode_request(msg: RemoteRequest) -> bytes:
    m = wire.schema().RemoteRequest.new_message()
    if isinstance(msg, Hello):
        b = m.init("hello")
        b.protocolVersion, b.token, b.storeDir = msg.protocol_version, msg.token, msg.store_dir
        b.config, b.sourceHash, b.sourceName = msg.config, msg.source_hash, msg.source_name
    elif isinstance(msg, Work):
        wire.fill_work(m.init("work"), msg)
    elif isinstance(msg, Reset):
        m.reset = msg.fresh
    elif isinstance(msg, SourceChunk):
        b = m.init("source")
        b.data, b.last = msg.data, msg.last
    else:
        m.shutdown = None
    return m.to_bytes()


def encode_response(msg: RemoteResponse) -> bytes:
    m = wire.schema().RemoteResponse.new_message()
    if isinstance(msg, wire.Ready):
        wire.fill_ready(m.init("ready"), msg)
    elif isinstance(msg, Result):
        wire.fill_result(m.init("result"), msg)
    elif isinstance(msg, Died):
        b = m.init("died")
        b.batch, b.inFlight, b.reason = msg.batch, -1 if msg.in_flight is None else msg.in_flight, msg.reason
        b.memory, b.innocent = msg.memory, msg.innocent
    elif isinstance(msg, Refused):
        m.refused = msg.message
    elif isinstance(msg, Fatal):
        m.fatal = msg.message
    elif isinstance(msg, NeedSource):
        m.needSource = None
    else:
        m.alive = None
    return m.to_bytes()


def decode_request(frame: bytes) -> RemoteRequest:
    try:
        with wire.schema().RemoteRequest.from_bytes(frame, traversal_limit_in_words=_TRAVERSAL_LIMIT_WORDS) as m:
            which = m.which()
            if which == "hello":
                b = m.hello
                return Hello(b.protocolVersion, b.token, b.storeDir, bytes(b.config), b.sourceHash, b.sourceName)
            if which == "work":
                return wire.read_work(m.work)
            if which == "reset":
                return Reset(m.reset)
            if which == "source":
                return SourceChunk(bytes(m.source.data), m.source.last)
            return Shutdown()
    except Exception as e:
        raise ProtocolError(f"malformed request: {e}") from e


def decode_response(frame: bytes) -> RemoteResponse:
    try:
        with wire.schema().RemoteResponse.from_bytes(frame, traversal_limit_in_words=_TRAVERSAL_LIMIT_WORDS) as m:
            which = m.which()
            if which == "ready":
                return wire.read_ready(m.ready)
            if which == "result":
                return wire.read_result(m.result)
            if which == "died":
                b = m.died
                return Died(b.batch, None if b.inFlight < 0 else b.inFlight, b.reason, b.memory, b.innocent)
            if which == "refused":
                return Refused(m.refused)
            if which == "fatal":
                return Fatal(m.fatal)
            if which == "needSource":
                return NeedSource()
            return Alive()
    except Exception as e:
        raise ProtocolError(f"malformed response: {e}") from e
