"""The worker's message loop over a pair of file descriptors (a local pipe or a TCP socket).

Runs on the main thread: Nix needs the big stack `ensure_stack` gives it and must not be
called from unregistered threads.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

import orjson

from protocol import wire
from protocol.config import ConfigError, EvalConfig

from .evaluator import Evaluator, peak_rss_kib
from .loader import LoadError, load
from .names import utf8_json
from protocol.environment import PROGRESS_FD_ENV


class _Progress:
    """Shared memory where the worker marks (batch, item) before each item, so that after a
    crash or a timeout the master knows which attribute was in flight."""

    def __init__(self) -> None:
        fd = os.environ.get(PROGRESS_FD_ENV)
        self.map = mmap.mmap(int(fd), 16) if fd else None
        self.batch = 0

    def mark(self, index: int) -> None:
        if self.map is not None:
            struct.pack_into("<QQ", self.map, 0, self.batch, index + 1)


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        b = os.read(fd, n)
        if not b:
            raise EOFError
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes:
    first = _read_exact(fd, 4)
    header = first + _read_exact(fd, wire.header_size(first) - 4)
    return header + _read_exact(fd, wire.frame_size(header) - len(header))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(in_fd: int, out_fd: int) -> int:
    """Answers setup, work and shutdown until shutdown or EOF; returns the exit code.

    Nix and the schema are ready before waiting for setup, so an idle worker in a pool is truly warm.
    """
    import nixffi

    nixffi.init()
    wire.schema()  # ~50 ms of capnp import: spent while the master is still starting, not after setup
    try:
        setup = wire.decode_request(read_frame(in_fd))
    except EOFError:
        return 0
    if isinstance(setup, wire.Shutdown):  # a warm worker closed before it was used
        return 0
    if not isinstance(setup, wire.Setup):
        print("evix worker: expected setup as the first message", file=sys.stderr)
        return 2
    if setup.protocol_version != wire.PROTOCOL_VERSION:
        write_all(out_fd, wire.encode_response(wire.Fatal(
            f"protocol version mismatch: master speaks {setup.protocol_version}, worker {wire.PROTOCOL_VERSION}")))
        return 2
    try:
        config = EvalConfig.from_json(orjson.loads(setup.config))
        root = load(config)
    except (LoadError, ConfigError) as e:
        write_all(out_fd, wire.encode_response(wire.Fatal(str(e))))
        return 1

    write_all(out_fd, wire.encode_response(wire.Ready(wire.PROTOCOL_VERSION, nixffi.nix_version(), os.getpid())))
    # A backstop for allocations too fast for the master's RSS watchdog: past it Nix fails
    # with std::bad_alloc on the attribute. Set after loading, so a small limit never stops
    # the input from loading; recycling (peak RSS over the limit) stays the normal path.
    limit = config.max_memory_mb << 20
    nixffi.limit_gc_heap(max(2 * limit, nixffi.gc_heap_size() + limit))
    evaluator = Evaluator(root, config)
    progress = _Progress()
    while True:
        try:
            msg = wire.decode_request(read_frame(in_fd))
        except EOFError:
            return 0
        if isinstance(msg, wire.Shutdown):
            return 0
        if not isinstance(msg, wire.Work):
            print(f"evix worker: unexpected {type(msg).__name__}", file=sys.stderr)
            return 2
        progress.batch = msg.batch
        outcome = evaluator.run(orjson.loads(msg.items), progress.mark)
        events = utf8_json(b"\n".join(outcome.events) + b"\n") if outcome.events else b""
        write_all(out_fd, wire.encode_response(wire.Result(
            msg.batch, events, b"[" + b",".join(outcome.expansions) + b"]", outcome.done, outcome.derivations,
            outcome.errors, outcome.recycle, peak_rss_kib())))
