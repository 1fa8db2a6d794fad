"""One evaluation of a session compared with the warm graph it replaces.

What `Session.diff_once`, `evix watch` and the daemon's watch hubs all do: evaluate, then
diff the new graph against the one before it (an empty one when there was none); an input
that cannot load gives a failure diff instead, and the warm graph stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from evixd.worker_launch import SpawnedWorker
from protocol.rpc_results import Diff, DiffError

from .errors import EvixError
from .graph import Graph, diff_graphs
from .scheduler import EventSink, Summary

if TYPE_CHECKING:
    from .session import Session


@dataclass(frozen=True)
class WatchUpdate:
    """One re-evaluation: how it differs from the last good graph; `summary` None when the
    input could not be loaded (then `diff.errors` holds why, and `error` is what was raised)."""

    diff: Diff
    summary: Summary | None
    error: EvixError | None = None


def failure_diff(error: Exception) -> Diff:
    """The diff of an evaluation that could not load the input: one error, on the root."""
    return Diff([], [], [], [DiffError("", str(error))])


async def evaluate_compared(session: Session, sink: EventSink | None = None,
                            spawned: list[SpawnedWorker] | None = None, *, compare: bool = True,
                            ) -> WatchUpdate | None:
    """Evaluates `session` (chunks to `sink`, with the `spawned` processes) and compares the
    new warm graph with the one before it. An input that fails to load gives a failure
    update and leaves the graph as it was. `compare=False` (a first evaluation, which is no
    change): a good evaluation returns None, its diff never computed."""
    old = session.graph or Graph()
    try:
        summary = await session.evaluate(sink, spawned=spawned)
    except EvixError as e:
        return WatchUpdate(failure_diff(e), None, e)
    if not compare:
        return None
    assert session.graph is not None
    return WatchUpdate(diff_graphs(old, session.graph), summary)
