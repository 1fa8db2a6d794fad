"""Entry of a worker process: `python -m evix_worker` (or any binary that calls `run_worker`)."""

from __future__ import annotations

import os
import sys

from protocol.environment import STACK_BYTES, WORKER_ENV, raise_stack_limit

__all__ = ["WORKER_ENV", "STACK_BYTES", "ensure_stack", "run_worker"]

_REEXEC_ENV = "EVIX_WORKER_STACK_SET"


def ensure_stack() -> None:
    """Re-executes this process with a STACK_BYTES main-thread stack, unless it has one
    (workers spawned by evix get it from their parent; an embedder's may not)."""
    if os.environ.get(_REEXEC_ENV) or not raise_stack_limit():
        return
    os.environ[_REEXEC_ENV] = "1"
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def run_worker() -> int:
    """Serves the worker protocol on stdin/stdout; stdout is moved aside so stray output
    from Nix cannot corrupt frames. Returns the exit code."""
    ensure_stack()
    try:
        from .serve import serve
    except ImportError as e:  # nixffi.NixUnavailableError: its message says how to get the Nix C API
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1

    out_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        return serve(0, out_fd)
    except KeyboardInterrupt:
        return 130
