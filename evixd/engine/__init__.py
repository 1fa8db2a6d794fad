"""The evaluation engine: one run (Scheduler) over a shared queue, the workers it drives, and
sessions that keep a run's graph warm for queries and diffs. Loads no daemon module.

    session = await Session.open(EvalConfig(flake=".#hydraJobs", workers=4))
"""

from .errors import EvixError as EvixError
from .errors import InputError as InputError
from .errors import SessionError as SessionError
from .errors import WorkerStartError as WorkerStartError
from .event_stream import EventStream as EventStream
from .graph import Diff as Diff
from .graph import Graph as Graph
from .pool import WorkerPool as WorkerPool
from .run import run_evaluation as run_evaluation
from .scheduler import Scheduler as Scheduler
from .scheduler import Summary as Summary
from .session import Session as Session
