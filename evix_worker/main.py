"""Entry of a worker process: `python -m evix_worker` (or any binary that calls `run_worker`)."""

from __future__ import annotations

import os
import resource
import sys

WORKER_ENV = "EVIX_WORKER"
"""Set in a worker's environment. An embedder whose binary re-executes itself to host
workers checks it at start-up and calls `run_worker()` when it is set."""

STACK_BYTES = 64 << 20
_REEXEC_ENV = "EVIX_WORKER_STACK_SET"


def ensure_stack() -> None:
    """Re-executes this process with a 64 MiB main-thread stack.

    Nix uses ~2 KiB of C stack per call level: on the default 8 MiB a deep recursion
    segfaults before Nix's own max-call-depth can report it as an error.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= STACK_BYTES or os.environ.get(_REEXEC_ENV):
        return
    new = STACK_BYTES if hard == resource.RLIM_INFINITY else min(STACK_BYTES, hard)
    if new <= soft:
        return
    resource.setrlimit(resource.RLIMIT_STACK, (new, hard))
    os.environ[_REEXEC_ENV] = "1"
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def run_worker() -> int:
    """Serves the worker protocol on stdin/stdout; stdout is moved aside so stray output
    from Nix cannot corrupt frames. Returns the exit code."""
    ensure_stack()
    from .serve import serve

    out_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        return serve(0, out_fd)
    except KeyboardInterrupt:
        return 130
