"""Line framing of the daemon protocol: one JSON message per line, with a size cap.

A message is UTF-8 JSON without raw newlines (JSON never needs one), ended by "\\n".
A reader that meets a line longer than its cap reports it once and skips to the next
newline, so one oversize request costs the connection nothing but an error answer, and
never more memory than the cap. No trio here: the sync client uses this too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

DEFAULT_MAX_LINE = 4 << 20  # 4 MiB: a config is a few KiB, so this only stops abuse


class FrameTooLarge(Exception):
    """A line exceeded the cap; its bytes were (or will be) discarded."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than the limit of {limit} bytes")
        self.limit = limit


class FrameDecodeError(ValueError):
    """A line is not valid JSON (JSON-RPC's parse error)."""


class LineBuffer:
    """Turns received chunks into complete lines (without the newline)."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._skipping = False  # inside an oversize line: drop bytes up to its newline

    def feed(self, data: bytes) -> Iterator[bytes | FrameTooLarge]:
        """Yields each complete line, or a FrameTooLarge in place of an oversize one."""
        self._buf += data
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl < 0:
                if self._skipping:
                    self._buf.clear()
                    self._scanned = 0
                elif len(self._buf) > self.max_line:
                    self._skipping = True
                    self._buf.clear()
                    self._scanned = 0
                    yield FrameTooLarge(self.max_line)
                else:
                    self._scanned = len(self._buf)
                return
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            self._scanned = 0
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.max_line:
                yield FrameTooLarge(self.max_line)
                continue
            if line.strip():
                yield line

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._buf)


def decode(line: bytes) -> Any:
    """The JSON value of one line; FrameDecodeError when it is not JSON."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise FrameDecodeError(str(e)) from None


def encode(message: Any) -> bytes:
    """One framed line: a JSON value, or bytes that already hold one JSON message."""
    if isinstance(message, (bytes, bytearray)):
        return bytes(message) + b"\n"
    return orjson.dumps(message) + b"\n"
