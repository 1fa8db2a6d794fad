"""Framing and typed messages of the worker protocol (schema/worker.capnp).

Cap'n Proto readers never leave this module: callers get frozen dataclasses. Frames are
the standard stream framing, whose length is known from the segment table, so a reader
needs no extra length prefix; `FrameParser` is the one reader of that framing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 30
_TRAVERSAL_LIMIT_WORDS = MAX_FRAME_BYTES // 8

_schema: Any = None


def schema() -> Any:
    """The loaded schema; loaded once, from one place (loading it twice aborts the process)."""
    global _schema
    if _schema is None:
        import capnp  # ~50 ms: only processes that speak to workers pay for it

        capnp.remove_import_hook()
        _schema = capnp.load(str(Path(__file__).with_name("schema") / "worker.capnp"))
    return _schema


class ProtocolError(Exception):
    """A peer sent something that is not a valid message of this protocol or version."""


# ---- framing --------------------------------------------------------------------------
def header_size(first_word: bytes) -> int:
    """Bytes of the segment table, given the frame's first 4 bytes."""
    (segments_minus_one,) = struct.unpack_from("<I", first_word)
    n = segments_minus_one + 1
    if n > 512:
        raise ProtocolError(f"implausible segment count {n}")
    return (4 + 4 * n + 7) & ~7


def frame_size(header: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    """Total frame length in bytes, given its whole segment table; ProtocolError past `max_bytes`."""
    (segments_minus_one,) = struct.unpack_from("<I", header)
    sizes = struct.unpack_from(f"<{segments_minus_one + 1}I", header, 4)
    total = len(header) + 8 * sum(sizes)
    if total > max_bytes:
        raise ProtocolError(f"frame of {total} bytes exceeds the limit of {max_bytes}")
    return total


class FrameParser:
    """Cuts a byte stream into frames: `feed` what arrived, then take `next_frame` until None.

    The one frame reader of the protocol; the worker's blocking loop and the master's trio
    stream each only supply the bytes. ProtocolError as soon as a frame's header is implausible.
    """

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._size = 0  # length of the frame at the head of _buf, once its header is in (else 0)

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet cut into a frame (a truncated frame leaves some at EOF)."""
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None until more bytes are fed."""
        buf = self._buf
        if not self._size:
            if len(buf) < 4:
                return None
            hsize = header_size(bytes(buf[:4]))
            if len(buf) < hsize:
                return None
            self._size = frame_size(bytes(buf[:hsize]), self.max_bytes)
        if len(buf) < self._size:
            return None
        frame = bytes(buf[: self._size])
        del buf[: self._size]
        self._size = 0
        return frame


# ---- messages -------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    protocol_version: int
    config: bytes
    template: bool = False


@dataclass(frozen=True)
class Work:
    batch: int
    items: bytes


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Ready:
    protocol_version: int
    nix_version: str
    pid: int
    store_dir: str = ""


@dataclass(frozen=True)
class Result:
    batch: int
    events: bytes
    expansions: bytes
    done: int
    derivations: int
    errors: int
    recycle: bool
    peak_rss_kib: int
    out_of_memory: str = ""


@dataclass(frozen=True)
class Fatal:
    message: str


Request = Setup | Work | Shutdown
Response = Ready | Result | Fatal


# The structs both the local and the remote conversation carry (remote_wire.py uses them too).

def fill_work(b: Any, msg: Work) -> None:
    b.batch, b.items = msg.batch, msg.items


def read_work(b: Any) -> Work:
    return Work(b.batch, bytes(b.items))


def fill_ready(b: Any, msg: Ready) -> None:
    b.protocolVersion, b.nixVersion, b.pid, b.storeDir = msg.protocol_version, msg.nix_version, msg.pid, msg.store_dir


def read_ready(b: Any) -> Ready:
    return Ready(b.protocolVersion, b.nixVersion, b.pid, b.storeDir)


def fill_result(b: Any, msg: Result) -> None:
    b.batch, b.events, b.expansions, b.done = msg.batch, msg.events, msg.expansions, msg.done
    b.derivations, b.errors, b.recycle = msg.derivations, msg.errors, msg.recycle
    b.peakRssKib, b.outOfMemory = msg.peak_rss_kib, msg.out_of_memory


def read_result(b: Any) -> Result:
    return Result(b.batch, bytes(b.events), bytes(b.expansions), b.done, b.derivations, b.errors, b.recycle,
                  b.peakRssKib, b.outOfMemory)


def encode_request(msg: Request) -> bytes:
    s = schema()
    m = s.Request.new_message()
    if isinstance(msg, Setup):
        b = m.init("setup")
        b.protocolVersion = msg.protocol_version
        b.config = msg.config
        b.template = msg.template
    elif isinstance(msg, Work):
        fill_work(m.init("work"), msg)
    else:
        m.shutdown = None
    return m.to_bytes()


def encode_response(msg: Response) -> bytes:
    s = schema()
    m = s.Response.new_message()
    if isinstance(msg, Ready):
        fill_ready(m.init("ready"), msg)
    elif isinstance(msg, Result):
        fill_result(m.init("result"), msg)
    else:
        m.fatal = msg.message
    return m.to_bytes()


def decode_request(frame: bytes) -> Request:
    try:
        with schema().Request.from_bytes(frame, traversal_limit_in_words=_TRAVERSAL_LIMIT_WORDS) as m:
            which = m.which()
            if which == "setup":
                b = m.setup
                return Setup(b.protocolVersion, bytes(b.config), b.template)
            if which == "work":
                return read_work(m.work)
            return Shutdown()
    except ProtocolError:
        raise
    except Exception as e:
        raise ProtocolError(f"malformed request: {e}") from e


def decode_response(frame: bytes) -> Response:
    try:
        with schema().Response.from_bytes(frame, traversal_limit_in_words=_TRAVERSAL_LIMIT_WORDS) as m:
            which = m.which()
            if which == "ready":
                return read_ready(m.ready)
            if which == "result":
                return read_result(m.result)
            return Fatal(m.fatal)
    except Exception as e:
        raise ProtocolError(f"malformed response: {e}") from e
