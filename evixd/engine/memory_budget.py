"""One memory budget for a run's local workers together: W workers may own W × --max-memory
between them.

A worker past --max-memory is recycled after its item in any case (it checks itself), so
the limit bounds what each worker carries from one item to the next. What the budget changes
is the middle of an item: a worker that needs more than its share for one heavy item (a
variant's own stdenv bootstrap on top of what it already evaluated) goes on while the others
leave room, instead of being killed with its work lost and its item retried. Only when the
workers together pass the budget is the largest of them killed (its item is then retried
alone in a fresh worker, held to --max-memory itself). The machine never holds more than
the per-worker limit allowed before: W × M, plus the template, counted once.
"""

from __future__ import annotations

from protocol.config import EvalConfig


class MemoryBudget:
    """The latest own-memory figure of each live worker, and what one of them may own now."""

    def __init__(self, config: EvalConfig) -> None:
        self.workers = max(1, config.workers)
        self.per_worker = config.max_memory_mb << 20
        self.total = config.memory_budget
        self._own: dict[int, int] = {}  # pid -> bytes, as its watchdog last saw them

    def limit_for(self, pid: int) -> int:
        """Bytes worker `pid` may own before it is killed: its share, or what the others
        leave of the budget, whichever is more; never less than the largest other worker
        owns, so that of two over the budget the largest is the one killed."""
        others = [own for other, own in self._own.items() if other != pid]
        return max(self.per_worker, self.total - sum(others), max(others, default=0))

    def update(self, pid: int, own: int) -> None:
        self._own[pid] = own

    def leave(self, pid: int) -> None:
        """The worker ended: its memory is free again."""
        self._own.pop(pid, None)
