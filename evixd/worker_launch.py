"""Starting a local worker process: the one place that knows its command, environment, stack
and progress word.

Part of the engine, but it sits beside `evixd.engine`, not inside it: Python imports every
parent package first, and this module must import neither trio nor the rest of the engine,
so that the CLI can start its workers first and import the engine while they start up
(~80 ms sooner)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass

from protocol.environment import PROGRESS_FD_ENV, WORKER_ENV, raise_stack_limit
from protocol.lifetime import die_with_parent

__all__ = ["SpawnedWorker", "spawn"]


def default_command() -> list[str]:
    return [sys.executable, "-m", "evix_worker"]


@dataclass
class SpawnedWorker:
    """A worker process that has started (it initialises Nix, then waits for setup)."""

    process: subprocess.Popen[bytes]
    progress_fd: int


def _prepare_child(parent_pid: int) -> None:
    """The child's first steps after fork, before exec: bound to its master's life (killed
    when the master dies, even by SIGKILL), then the stack (spares the worker re-executing
    itself for it)."""
    die_with_parent(parent_pid)
    raise_stack_limit()


def spawn(command: list[str] | None = None) -> SpawnedWorker:
    """Starts a worker with pipes on stdin/stdout/stderr, in its own session (so Ctrl-C reaches
    only the master, which stops its workers), with its stack and progress word; it dies with
    the master. Call it from the master's main thread (see protocol.lifetime)."""
    progress_fd = os.memfd_create("evix-progress")
    os.ftruncate(progress_fd, 16)
    env = dict(os.environ, **{WORKER_ENV: "1", PROGRESS_FD_ENV: str(progress_fd)})
    # Without it glibc hands heap back to the kernel and takes it again around every .drv
    # Nix writes: up to 2x slower evaluation (measured, bench/README.md).
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(256 << 20))
    process = subprocess.Popen(
        command or default_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=(progress_fd,),
        start_new_session=True,
        preexec_fn=functools.partial(_prepare_child, os.getpid()),
    )
    return SpawnedWorker(process, progress_fd)
