"""Starting a worker process: the one place that knows its command, environment, stack and
progress word. Imports neither trio nor Nix, so the CLI can start its workers first and
import the engine while they start up (~80 ms sooner)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass

from protocol.environment import PROGRESS_FD_ENV, WORKER_ENV

__all__ = ["WORKER_ENV", "PROGRESS_FD_ENV", "STACK_BYTES", "SpawnedWorker", "spawn", "raise_stack_limit"]

STACK_BYTES = 64 << 20
"""Nix uses ~2 KiB of C stack per call level: on the default 8 MiB a deep recursion segfaults
before Nix's own max-call-depth (10,000) can report it as an error."""


def raise_stack_limit() -> bool:
    """Raises this process's RLIMIT_STACK soft limit to STACK_BYTES (as the hard limit allows).

    Takes effect for programs exec'd afterwards. Returns True when it changed the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= STACK_BYTES:
        return False
    want = STACK_BYTES if hard == resource.RLIM_INFINITY else min(STACK_BYTES, hard)
    if want <= soft:
        return False
    resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
    return True


def default_command() -> list[str]:
    return [sys.executable, "-m", "evix_worker"]


@dataclass
class SpawnedWorker:
    """A worker process that has started (it initialises Nix, then waits for setup)."""

    process: subprocess.Popen[bytes]
    progress_fd: int


def spawn(command: list[str] | None = None) -> SpawnedWorker:
    """Starts a worker with pipes on stdin/stdout/stderr, in its own session (so Ctrl-C reaches
    only the master, which stops its workers), with its stack and progress word."""
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
        preexec_fn=raise_stack_limit,  # spares the worker re-executing itself for its stack
    )
    return SpawnedWorker(process, progress_fd)
