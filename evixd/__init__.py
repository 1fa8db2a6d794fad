"""evixd: the evaluation engine and, beside it, the daemon.

    evixd.engine         scheduler, worker handles, pool, session and warm graph (the library)
    evixd.worker_launch  starting a local worker process (light: the CLI uses it before the engine)
    evixd.daemon         socket, connections, JSON-RPC, handlers and the session registry

This package face imports nothing heavy: the CLI imports `evixd.worker_launch` before trio.
Nix runs in worker subprocesses only; no module here loads nixffi.

Embedders whose binary re-executes itself to host workers: set
`EvalConfig(worker_command=(your_binary, ...))`, and at start-up call `run_worker()` when
the environment has `WORKER_ENV` set:

    if os.environ.get(evixd.WORKER_ENV):
        sys.exit(evixd.run_worker())
"""

from protocol.environment import WORKER_ENV as WORKER_ENV


def run_worker() -> int:
    """Serves one worker on stdin/stdout in this process (imports Nix: only in worker processes)."""
    from evix_worker import run_worker as _run

    return _run()
