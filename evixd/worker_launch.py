"""Starting a local worker process: the one place that knows its command, environment, stack
and in-flight word.

Part of the engine, but it sits beside `evixd.engine`, not inside it: Python imports every
parent package first, and this module must import neither trio nor the rest of the engine,
so that the CLI can start its workers first and import the engine while they start up
(~80 ms sooner)."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

from protocol.config import EvalConfig
from protocol.environment import CONTROL_FD_ENV, IN_FLIGHT_FD_ENV, WORKER_ENV, raise_stack_limit
from protocol.in_flight import InFlightWord
from protocol.lifetime import die_with_parent

__all__ = ["SpawnedWorker", "heap_environment", "spawn", "spawn_ahead"]

NIX_INITIAL_HEAP = 384 << 20  # Boehm's heap as Nix sizes it up front, unless GC_INITIAL_HEAP_SIZE is set


def default_command() -> list[str]:
    return [sys.executable, "-m", "evix_worker"]


@dataclass
class SpawnedWorker:
    """A worker process that has started (it initialises Nix, then waits for setup), and the
    master's mapping of its in-flight word (closing that is the caller's job)."""

    process: subprocess.Popen[bytes]
    in_flight: InFlightWord
    control: socket.socket
    """Our end of its control socket: used only if it is set up as a template."""

    def discard(self) -> None:
        """Kills a process never handed to a run and closes everything of it we hold."""
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        self.in_flight.close()
        self.control.close()


def heap_environment(config: EvalConfig) -> dict[str, str]:
    """Under a memory limit, a smaller initial heap for Nix's garbage collector.

    Nix gives Boehm a 384 MiB heap up front, and Boehm uses all of it before it first
    collects: a worker's memory grows by every byte evaluation allocates, most of it garbage.
    On bench/'s realistic set a worker held 360 MiB after 750 items, 77 MiB of it live (one
    collection: 28 ms). Under --max-memory that garbage got workers recycled and killed, and
    their successors evaluated again what they had built. With an initial heap of a quarter
    of the limit Boehm collects by its usual rule (when a share of the heap has been allocated
    since the last collection) and grows the heap by what stays live. Nix's own size is kept
    for limits of four times it and more, and GC_INITIAL_HEAP_SIZE set by the user wins."""
    heap = (config.max_memory_mb << 20) // 4
    if heap >= NIX_INITIAL_HEAP or "GC_INITIAL_HEAP_SIZE" in os.environ:
        return {}
    return {"GC_INITIAL_HEAP_SIZE": str(max(heap, 16 << 20))}


def _prepare_child(parent_pid: int) -> None:
    """The child's first steps after fork, before exec: bound to its master's life (killed
    when the master dies, even by SIGKILL), then the stack (spares the worker re-executing
    itself for it)."""
    die_with_parent(parent_pid)
    raise_stack_limit()


def spawn(command: list[str] | None = None, extra_env: dict[str, str] | None = None) -> SpawnedWorker:
    """Starts a worker with pipes on stdin/stdout/stderr, in its own session (so Ctrl-C reaches
    only the master, which stops its workers), with its stack, in-flight word and control
    socket; it dies with the master. `extra_env`: what its config needs set before Nix starts
    (heap_environment). Call it from the master's main thread (see protocol.lifetime)."""
    in_flight = InFlightWord.create()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ, **(extra_env or {}),
               **{WORKER_ENV: "1", IN_FLIGHT_FD_ENV: str(in_flight.fd), CONTROL_FD_ENV: str(theirs.fileno())})
    # Without it glibc hands heap back to the kernel and takes it again around every .drv
    # Nix writes: up to 2x slower evaluation (measured, bench/README.md).
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(256 << 20))
    try:
        process = subprocess.Popen(
            command or default_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=(in_flight.fd, theirs.fileno()),
            start_new_session=True,
            preexec_fn=functools.partial(_prepare_child, os.getpid()),
        )
    except BaseException:
        in_flight.close()
        ours.close()
        raise
    finally:
        theirs.close()
    return SpawnedWorker(process, in_flight, ours)


def spawn_ahead(config: EvalConfig) -> list[SpawnedWorker]:
    """The processes a run of `config` starts, started now: they initialise Nix while the
    caller imports the engine (~80 ms sooner)."""
    command = list(config.worker_command) if config.worker_command else None
    return [spawn(command, heap_environment(config)) for _ in range(config.processes_per_run)]
