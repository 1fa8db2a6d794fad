"""The in-flight word: which item a worker is on, in 16 bytes of memory shared with its master.

Before each item the worker writes (batch id, item index + 1), two little-endian u64; an
item of 0 means no item of that batch has started. The master reads it while a batch runs
(no change for --timeout seconds: kill) and after the worker dies (that item gets the error
event). It lives in a memfd whose number the worker finds in `IN_FLIGHT_FD_ENV`.

This is the layout's only definition: the C helper that marks the word from the worker
gets its constants from `c_defines()` at build time (nixffi/_build.py). Standard library
only, so that the build can load this file on its own.
"""

from __future__ import annotations

import mmap
import os
import struct

LAYOUT = struct.Struct("<QQ")  # batch id, item index + ITEM_BIAS
SIZE = LAYOUT.size
BATCH_OFFSET = 0
ITEM_OFFSET = struct.calcsize("<Q")
ITEM_BIAS = 1  # so that a zeroed word means "nothing started"


def pack(batch: int, item: int) -> bytes:
    """The word's bytes once item `item` (a flat index) of batch `batch` has started."""
    return LAYOUT.pack(batch, item + ITEM_BIAS)


def item_of(word: bytes | bytearray | memoryview | mmap.mmap, batch: int) -> int | None:
    """The index of the item of `batch` that the word says started last (None: none did)."""
    seen_batch, biased = LAYOUT.unpack_from(word, 0)
    return biased - ITEM_BIAS if seen_batch == batch and biased >= ITEM_BIAS else None


def c_defines() -> dict[str, int]:
    """The layout as C preprocessor constants, for the worker's C marker."""
    assert LAYOUT.format == "<QQ", "the C marker writes two little-endian u64"
    return {
        "EVIX_IN_FLIGHT_SIZE": SIZE,
        "EVIX_IN_FLIGHT_BATCH_OFFSET": BATCH_OFFSET,
        "EVIX_IN_FLIGHT_ITEM_OFFSET": ITEM_OFFSET,
        "EVIX_IN_FLIGHT_ITEM_BIAS": ITEM_BIAS,
    }


class InFlightWord:
    """One process's mapping of the word (the memfd `fd`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, SIZE)

    @classmethod
    def create(cls) -> InFlightWord:
        """A new, zeroed word, for a worker about to be started (pass it `fd`)."""
        fd = os.memfd_create("evix-in-flight")
        os.ftruncate(fd, SIZE)
        return cls(fd)

    def item_of(self, batch: int) -> int | None:
        return item_of(self.map, batch)

    def snapshot(self) -> bytes:
        """The raw word: equal snapshots mean the worker has not moved on."""
        return self.map[:SIZE]

    def close(self) -> None:
        """Unmaps the word and closes its fd (the master's copy)."""
        self.map.close()
        os.close(self.fd)
