"""Re-evaluating on change: coalescing what inotify reports into one evaluation per burst.

A change marks the input dirty; the evaluation starts once no change has come for
DEBOUNCE seconds (at most MAX_DELAY after the first, so an endless trickle still gets
evaluated). Changes that come while an evaluation runs mark it dirty again, so exactly one
more evaluation follows, whatever their number: no change is lost, none costs a storm.

The watches exist before the first evaluation starts, so nothing written during it is
missed. Re-evaluations read the files as they are now, in processes that have not loaded
the input before: a worker (or template) keeps Nix's cache of the files it parsed, so one
that loaded the old files would give stale results. What keeps them fast is the session's
WorkerPool: it keeps a process started, with Nix initialised, that has loaded nothing yet;
a change hands it the new input, so neither Python's start-up nor Nix's initialisation is
on the critical path (the pool starts the next spare once the evaluation is over).

An input that cannot load (a syntax error, a deleted file) is not the end of a watch: it
gives a diff whose `errors` say why, the warm graph stays the last good one, and the next
good state is compared with it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from evixd.worker_launch import SpawnedWorker

from .event_stream import _unwrapped
from .inotify_watch import TreeWatcher
from .pool import WorkerPool
from .reevaluation import WatchUpdate, evaluate_compared
from .scheduler import EventSink
from .watch_paths import WatchTargets, check_watchable, watch_targets

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("evix.watch")

DEBOUNCE = 0.02  # seconds without a change that end a burst
MAX_DELAY = 0.5  # seconds after a burst's first change at most before its evaluation


class ChangeFlag:
    """Changes seen and not yet evaluated: noted by the watcher, taken by the evaluation loop."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.first = self.last = 0.0

    def note(self) -> None:
        now = trio.current_time()
        if not self._event.is_set():
            self.first = now
            self._event.set()
        self.last = now

    async def settled(self, debounce: float, max_delay: float) -> None:
        """Returns once a change is pending and the burst it belongs to has ended."""
        await self._event.wait()
        while (deadline := min(self.last + debounce, self.first + max_delay)) > trio.current_time():
            await trio.sleep_until(deadline)

    def take(self) -> None:
        """The pending changes are being evaluated now; later ones make it pending again."""
        self._event = trio.Event()


async def _follow(watcher: TreeWatcher, flag: ChangeFlag) -> None:
    while True:
        changes = await watcher.next_changes()
        if changes:
            log.debug("changed: %s", "overflow" if changes.overflow else sorted(changes.paths)[:5])
            flag.note()


async def run_watch(targets: Callable[[], WatchTargets], initial: Callable[[WatchTargets], Awaitable[object]],
                    again: Callable[[WatchTargets], Awaitable[object]], *, debounce: float = DEBOUNCE,
                    max_delay: float = MAX_DELAY) -> None:
    """Watches the roots of `targets()`, runs `initial` once they are watched, then `again`
    after each burst of changes, one at a time, until cancelled; each is handed the targets
    it runs with. `targets()` is asked again before each `again` (a lock file may have
    gained a path input), once: the lock file is read once per change."""
    current = targets()
    watcher = TreeWatcher(current.roots)
    log.info("watching %d directories", watcher.watched_dirs)
    flag = ChangeFlag()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_follow, watcher, flag)
            await initial(current)
            while True:
                await flag.settled(debounce, max_delay)
                flag.take()
                current = targets()
                watcher.add_roots(current.roots)
                await again(current)
    finally:
        watcher.close()


@contextlib.asynccontextmanager
async def watch_session(
    session: Session, extra: tuple[str, ...] = (), initial_sink: EventSink | None = None,
    spawned: list[SpawnedWorker] | None = None, *, debounce: float = DEBOUNCE,
) -> AsyncIterator[trio.MemoryReceiveChannel[WatchUpdate]]:
    """Evaluates `session` (its events to `initial_sink`, its first processes `spawned`),
    then yields a WatchUpdate after every change, for as long as the block lasts. A failed
    first evaluation is an update too. WatchError (before anything runs) when the input has
    nothing on disk to watch."""
    check_watchable(session.config)  # WatchError now, before anything starts
    send, receive = trio.open_memory_channel[WatchUpdate](math.inf)
    own_pool = session.pool is None
    if own_pool:
        session.pool = WorkerPool(list(session.config.worker_command) if session.config.worker_command else None)
    pool = session.pool
    assert pool is not None

    async def evaluate(sink: EventSink | None, first: bool, targets: WatchTargets) -> None:
        session.input_overrides = targets.overrides  # flake.lock as it is now
        pool.resize(0)  # no spare starting up while this evaluation needs the CPU
        # the first good evaluation is no change: not compared
        update = await evaluate_compared(session, sink, spawned if first else None, compare=not first)
        pool.resize(session.config.processes_per_run)  # a spare for the next change
        if update is not None:
            if update.error is not None:
                log.warning("%s", update.error)
            send.send_nowait(update)

    try:
        async with trio.open_nursery() as nursery:
            if own_pool:
                await nursery.start(pool.serve)
            targets = functools.partial(watch_targets, session.config, extra)
            nursery.start_soon(functools.partial(run_watch, targets, functools.partial(evaluate, initial_sink, True),
                                                 functools.partial(evaluate, None, False), debounce=debounce))
            yield receive
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the nursery wraps whatever left the block
        error = _unwrapped(group)
        raise error from error.__cause__
    finally:
        session.input_overrides = ()
        if own_pool:
            session.pool = None
