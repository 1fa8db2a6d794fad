"""The worker's side of the in-flight word (its layout: protocol/in_flight.py): marks, from C,
which item starts, so that the master can name the attribute that hung or crashed the worker.

The C marker's constants are generated from protocol/in_flight.py when nixffi is built, so
there is one definition of the layout for both languages (tests/test_in_flight_word.py)."""

from __future__ import annotations

from typing import Any

from ._native import ffi, lib

SIZE: int = lib.EVIX_IN_FLIGHT_SIZE


class InFlightMarker:
    """Marks items of the current `batch` in `word`, a writable buffer (the worker's mapping
    of the word); the buffer must outlive the marker."""

    def __init__(self, word: Any) -> None:
        if len(word) < SIZE:
            raise ValueError(f"the in-flight word needs {SIZE} bytes, got {len(word)}")
        self._word = ffi.from_buffer("char[]", word, require_writable=True)
        self.batch = 0

    def mark(self, item: int) -> None:
        """Item `item` (a flat index into the batch) starts now."""
        lib.evix_mark_in_flight(self._word, self.batch, item)
