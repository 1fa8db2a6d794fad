"""The worker's message loop over a pair of file descriptors (a local pipe or a TCP socket).

Runs on the main thread: Nix needs the big stack `ensure_stack` gives it and must not be
called from unregistered threads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import orjson

import nixffi
from protocol import wire
from protocol.config import ConfigError, EvalConfig
from protocol.environment import EVALUATOR_NAME, IN_FLIGHT_FD_ENV
from protocol.lifetime import set_process_name
from protocol.in_flight import InFlightWord

from .evaluator import Evaluator, peak_rss_kib
from .loader import LoadError, load, load_apply
from .names import utf8_json


class FrameReader:
    """Request frames from a blocking fd (the parsing is protocol.wire's)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.parser = wire.FrameParser()

    def read(self) -> bytes:
        """The next frame; EOFError when the master closed the stream."""
        while (frame := self.parser.next_frame()) is None:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError
            self.parser.feed(chunk)
        return frame


def in_flight_marker(fd: int | None = None) -> nixffi.InFlightMarker | None:
    """The marker of the in-flight word behind `fd`, else the one the environment names
    (None when started without one), so that after a crash or a timeout the master knows
    which attribute was in flight."""
    if fd is None and os.environ.get(IN_FLIGHT_FD_ENV):
        fd = int(os.environ[IN_FLIGHT_FD_ENV])
    return nixffi.InFlightMarker(InFlightWord(fd).map) if fd is not None else None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(in_fd: int, out_fd: int) -> int:
    """Answers setup, work and shutdown until shutdown or EOF; returns the exit code.

    Nix and the schema are ready before waiting for setup, so an idle worker in a pool is truly warm.
    A worker set up as a template loads the input, then forks workers (template.py) instead.
    """
    try:
        nixffi.init()
    except nixffi.NixError as e:  # a broken Nix configuration here (nix.conf, NIX_CONFIG): its own words
        print(f"evix worker: cannot initialise Nix: {e}", file=sys.stderr)
        return 1
    wire.schema()  # ~50 ms of capnp import: spent while the master is still starting, not after setup
    frames = FrameReader(in_fd)
    try:
        setup = wire.decode_request(frames.read())
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
        apply = load_apply(config, root)
    except (LoadError, ConfigError) as e:
        write_all(out_fd, wire.encode_response(wire.Fatal(str(e))))
        return 1
    cap_gc_heap(config)
    if setup.template:
        from .template import serve_template

        return serve_template(frames, out_fd, setup.config, root, lambda: Evaluator(root, config, apply),
                              config, not config.no_instantiate)
    set_process_name(EVALUATOR_NAME)
    write_all(out_fd, ready(root.state.store.store_dir))
    return serve_batches(frames, out_fd, Evaluator(root, config, apply), in_flight_marker())


def cap_gc_heap(config: EvalConfig) -> None:
    """A backstop for allocations too fast for the master's watchdog: past it Nix fails with
    std::bad_alloc on the attribute. Set after loading (and again when a template begins and
    ends warming), so a small limit never stops the input from loading and a fork (or a
    warming) gets the limit on top of the heap it shares; recycling (own memory over the
    limit) stays the normal path."""
    limit = config.max_memory_mb << 20
    nixffi.limit_gc_heap(max(2 * limit, nixffi.gc_heap_size() + limit))


def ready(store_dir: str = "") -> bytes:
    return wire.encode_response(wire.Ready(wire.PROTOCOL_VERSION, nixffi.nix_version(), os.getpid(), store_dir))


def serve_batches(frames: FrameReader, out_fd: int, evaluator: Evaluator, marker: nixffi.InFlightMarker | None) -> int:
    """Evaluates each batch sent until shutdown or EOF; returns the exit code."""
    mark: Callable[[int], None] = marker.mark if marker is not None else _no_marker
    while True:
        try:
            msg = wire.decode_request(frames.read())
        except EOFError:
            return 0
        if isinstance(msg, wire.Shutdown):
            return 0
        if not isinstance(msg, wire.Work):
            print(f"evix worker: unexpected {type(msg).__name__}", file=sys.stderr)
            return 2
        if marker is not None:
            marker.batch = msg.batch
        outcome = evaluator.run(orjson.loads(msg.items), mark)
        events = utf8_json(b"\n".join(outcome.events) + b"\n") if outcome.events else b""
        write_all(out_fd, wire.encode_response(wire.Result(
            msg.batch, events, b"[" + b",".join(outcome.expansions) + b"]", outcome.done, outcome.derivations,
            outcome.errors, outcome.recycle, peak_rss_kib(), outcome.out_of_memory)))


def _no_marker(item: int) -> None:
    pass
