"""The in-flight word has one layout (protocol.in_flight): the worker's C marker, built from
it, writes bytes that the master's Python reader decodes."""

from __future__ import annotations

import os

import pytest

import nixffi
from nixffi._native import lib
from protocol import in_flight
from protocol.environment import IN_FLIGHT_FD_ENV

CASES = [(0, 0), (1, 0), (7, 3), (2**32 + 5, 2**40 + 9), (2**64 - 1, 2**64 - 2)]


def test_the_c_helper_is_built_from_the_python_layout() -> None:
    assert lib.EVIX_IN_FLIGHT_SIZE == in_flight.SIZE == 16


@pytest.mark.parametrize("batch, item", CASES)
def test_what_the_c_marker_writes_the_python_reader_decodes(batch: int, item: int) -> None:
    word = bytearray(in_flight.SIZE)
    marker = nixffi.InFlightMarker(word)
    marker.batch = batch
    marker.mark(item)
    assert bytes(word) == in_flight.pack(batch, item)
    assert in_flight.item_of(word, batch) == item
    assert in_flight.item_of(word, batch ^ 1) is None  # another batch's mark says nothing of this one


def test_a_fresh_word_has_nothing_in_flight() -> None:
    word = in_flight.InFlightWord.create()
    try:
        assert word.snapshot() == bytes(in_flight.SIZE)
        assert word.item_of(0) is None
    finally:
        word.close()


def test_marks_through_a_second_mapping_reach_the_first() -> None:
    """As between a worker (maps the fd it inherits) and its master (created the word)."""
    master = in_flight.InFlightWord.create()
    worker = in_flight.InFlightWord(os.dup(master.fd))
    marker = nixffi.InFlightMarker(worker.map)
    marker.batch = 12
    before = master.snapshot()
    marker.mark(41)
    assert master.item_of(12) == 41 and master.snapshot() != before
    marker.mark(42)
    assert master.item_of(12) == 42
    del marker  # it holds the mapping's buffer
    worker.close()
    master.close()


def test_the_marker_refuses_a_buffer_smaller_than_the_word() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        nixffi.InFlightMarker(bytearray(in_flight.SIZE - 1))


def test_the_worker_is_told_where_its_word_is() -> None:
    from evixd.worker_launch import spawn

    spawned = spawn(["/bin/sh", "-c", f'printf %s "${IN_FLIGHT_FD_ENV}"; head -c 16 /dev/fd/${IN_FLIGHT_FD_ENV}'])
    try:
        out, _ = spawned.process.communicate(timeout=30)
    finally:
        spawned.in_flight.close()
    fd = str(spawned.in_flight.fd).encode()
    assert out == fd + bytes(in_flight.SIZE)
