"""evixd: the evaluation engine (scheduler, workers, sessions) and the daemon.

Never loads nixffi in-process: Nix runs in worker subprocesses only.

Embedders whose binary re-executes itself to host workers: set
`EvalConfig(worker_command=(your_binary, ...))`, and at start-up call `run_worker()` when
the environment has `WORKER_ENV` set:

    if os.environ.get(evixd.WORKER_ENV):
        sys.exit(evixd.run_worker())
"""

from evix_worker.spawn import WORKER_ENV as WORKER_ENV

from ._errors import EvixError as EvixError
from ._errors import InputError as InputError
from ._errors import SessionError as SessionError
from ._errors import WorkerStartError as WorkerStartError
from ._graph import Diff as Diff
from ._graph import Graph as Graph
from ._pool import WorkerPool as WorkerPool
from ._scheduler import Scheduler as Scheduler
from ._scheduler import Summary as Summary
from ._session import Session as Session


def run_worker() -> int:
    """Serves one worker on stdin/stdout in this process (imports Nix: only in worker processes)."""
    from evix_worker import run_worker as _run

    return _run()


def __getattr__(name: str) -> object:
    """The daemon's entry points load on first use: a local `evix eval` never needs them."""
    if name == "serve":
        from ._server import serve

        return serve
    if name == "DaemonSettings":
        from ._settings import DaemonSettings

        return DaemonSettings
    raise AttributeError(f"module 'evixd' has no attribute {name!r}")
