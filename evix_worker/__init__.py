"""evix_worker: one evaluator process. Loads the input once, then evaluates the batches of
attribute paths it is sent and answers with events (protocol/schema/worker.capnp)."""

from .main import WORKER_ENV as WORKER_ENV
from .main import run_worker as run_worker
