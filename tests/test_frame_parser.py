"""The worker protocol's one frame reader (protocol.wire.FrameParser) and the worker's
blocking reader built on it: frames come out whole and in order however the bytes arrive."""

from __future__ import annotations

import os
import struct
import threading

import pytest

from evix_worker.serve import FrameReader
from protocol import wire

MESSAGES = [
    wire.encode_request(wire.Setup(wire.PROTOCOL_VERSION, b'{"file":"/x.nix"}')),
    wire.encode_response(wire.Result(7, b"e" * 200_000, b"[]", 3, 1, 2, True, 1234)),  # two segments
    wire.encode_request(wire.Work(8, b"[[[],null]]")),
    wire.encode_request(wire.Shutdown()),
]


def _segments(frame: bytes) -> int:
    return struct.unpack_from("<I", frame)[0] + 1


def _parse(chunks: list[bytes]) -> list[bytes]:
    parser, frames = wire.FrameParser(), []
    for chunk in chunks:
        parser.feed(chunk)
        while (frame := parser.next_frame()) is not None:
            frames.append(frame)
    return frames


@pytest.mark.parametrize("step", [1, 3, 4096, 1 << 30])
def test_frames_come_out_whole_whatever_the_chunking(step: int) -> None:
    assert _segments(MESSAGES[1]) > 1
    data = b"".join(MESSAGES)
    assert _parse([data[i:i + step] for i in range(0, len(data), step)]) == MESSAGES
    assert wire.decode_response(_parse([data])[1]) == wire.decode_response(MESSAGES[1])


def test_a_partial_frame_waits_for_its_last_byte() -> None:
    parser = wire.FrameParser()
    parser.feed(MESSAGES[2][:-1])
    assert parser.next_frame() is None
    parser.feed(MESSAGES[2][-1:] + MESSAGES[3][:5])
    assert parser.next_frame() == MESSAGES[2]
    assert parser.next_frame() is None


def test_implausible_headers_are_protocol_errors() -> None:
    too_many_segments = wire.FrameParser()
    too_many_segments.feed(struct.pack("<I", 100_000))
    with pytest.raises(wire.ProtocolError, match="segment count"):
        too_many_segments.next_frame()
    too_large = wire.FrameParser()
    too_large.feed(struct.pack("<II", 0, wire.MAX_FRAME_BYTES // 8 + 1))
    with pytest.raises(wire.ProtocolError, match="exceeds the limit"):
        too_large.next_frame()


def test_the_worker_reader_reads_frames_written_in_pieces() -> None:
    r, w = os.pipe()
    data = b"".join(MESSAGES)

    def write() -> None:
        for i in range(0, len(data), 777):
            os.write(w, data[i:i + 777])
        os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reader = FrameReader(r)
        assert [reader.read() for _ in MESSAGES] == MESSAGES
        with pytest.raises(EOFError):
            reader.read()
    finally:
        writer.join()
        os.close(r)


def test_the_worker_reader_treats_a_truncated_frame_as_the_end() -> None:
    r, w = os.pipe()
    os.write(w, MESSAGES[2] + MESSAGES[3][:-1])
    os.close(w)
    reader = FrameReader(r)
    assert reader.read() == MESSAGES[2]
    with pytest.raises(EOFError):
        reader.read()
    os.close(r)
