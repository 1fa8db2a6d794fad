"""The worker interface the scheduler drives, whatever runs the evaluation.

A worker is opened as an async context manager (`WorkerSource.open`): entering it starts
the worker and sends it the config, leaving it always reaps it, however the block ends.
In between the scheduler sends batches and receives their results in order. A local
worker is a subprocess (`local_worker.py`); a remote one is a connection to
`evix worker --listen` (`remote_worker.py`), which is why a worker may own only some systems.

A worker that ends during a batch, or sends something that is not a valid answer, raises
`WorkerDied`; `in_flight` then tells which item of the batch it was evaluating.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager

from protocol import wire


class WorkerDied(Exception):
    """The worker ended during a batch; `reason` says how (signal, memory limit, timeout,
    malformed answer...), `memory` whether it was for memory (its item then gets a retry
    alone in a fresh worker). Which item it was on: `Worker.in_flight`."""

    def __init__(self, reason: str, *, memory: bool = False, innocent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.memory = memory
        self.innocent = innocent  # killed for a reason of its own (its template ended): blame no item


class Worker(abc.ABC):
    """One evaluation worker, set up for one config. Batches are answered in the order sent."""

    systems: frozenset[str] | None = None
    """The systems this worker evaluates derivations for; None: any."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """How logs and errors name this worker (a pid, an endpoint)."""

    @abc.abstractmethod
    async def send_batch(self, batch: int, items: bytes) -> None:
        """Queues batch `batch` (JSON items) on the worker; WorkerDied if it is gone."""

    @abc.abstractmethod
    async def receive_result(self, batch: int) -> wire.Result:
        """The answer to `batch`, the oldest batch sent; WorkerDied if the worker ends first."""

    @abc.abstractmethod
    def in_flight(self, batch: int) -> int | None:
        """After WorkerDied: the flat index of the item of `batch` it was on (None: unknown,
        or it had not started that batch)."""


class WorkerSource(abc.ABC):
    """Where a scheduler slot gets its workers from: one `open()` per worker life."""

    systems: frozenset[str] | None = None
    """The systems its workers own; None: any."""

    @abc.abstractmethod
    def open(self, *, fresh: bool = False) -> AbstractAsyncContextManager[Worker]:
        """Starts a worker set up for the run's config; raises WorkerStartError when it
        cannot start (`fatal` when the input itself cannot load). Exit reaps it.

        `fresh`: for an item retried alone, a worker whose own memory holds nothing of
        the input's evaluation yet (a fork of a template is one: what it shares with the
        template is not its own memory)."""

    async def warm(self, attr_path: tuple[str, ...]) -> None:
        """A hint that `attr_path` is heavy (it made a worker pass the memory limit): a
        source that can let the workers it starts later share its evaluation does so."""
