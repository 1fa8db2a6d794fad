"""Environment variables through which evix processes talk to each other (no imports: the
CLI reads them before anything else loads)."""

WORKER_ENV = "EVIX_WORKER"
"""Set in a worker's environment. An embedder whose binary re-executes itself to host
workers checks it at start-up and calls `run_worker()` when it is set."""

PROGRESS_FD_ENV = "EVIX_PROGRESS_FD"
"""The fd of a 16-byte shared memory where the worker marks (batch, item + 1) before each item."""
