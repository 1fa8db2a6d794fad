"""The daemon's warm sessions: one per config key, bounded, each with warm workers.

A session is keyed by `EvalConfig.session_key()` (what is evaluated, not how), so a
query finds it without repeating `--workers`. The registry keeps at most `max_sessions`
sessions and an estimated `max_session_memory` of graphs; past either, the least
recently used idle session goes. Each session's WorkerPool, after an evaluation, keeps
that many fresh workers (Nix already initialised) for `warm_seconds`, so the next eval or
diff skips process start-up while still loading the files as they are now.

What is the session's (config, graph and query index, last summary, evaluation count and
times, pool) lives in the engine's Session; a SessionEntry holds only what the daemon adds:
its place in the LRU order, the lock, whether it was removed, and the scope hosting its pool.

A per-session lock serialises evaluations (a second eval of the same config waits for
the first, then runs); queries never take it: they read the last finished graph.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from protocol import rpc_results
from protocol.config import EvalConfig

from evixd.engine.errors import SessionError
from evixd.engine.graph import Diff
from evixd.engine.pool import WorkerPool
from evixd.engine.scheduler import Summary
from evixd.engine.session import Session
from .settings import DaemonSettings

log = logging.getLogger("evix.daemon")
T = TypeVar("T")


@dataclass(eq=False)
class SessionEntry:
    """The daemon's bookkeeping around one engine Session (which owns everything else)."""

    session: Session
    lock: trio.Lock = field(default_factory=trio.Lock)
    last_used: float = field(default_factory=time.monotonic)  # for the LRU order
    pool_scope: trio.CancelScope | None = None  # cancelling it stops the session's pool
    removed: bool = False  # dropped or evicted: a waiter for the lock must not use it

    @property
    def key(self) -> str:
        return self.session.key

    @property
    def pool(self) -> WorkerPool:
        assert self.session.pool is not None, "the daemon gives every session a pool"
        return self.session.pool

    @property
    def busy(self) -> bool:
        return self.lock.locked()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def info(self) -> rpc_results.SessionInfo:
        """What `sessions` reports about this session."""
        s = self.session
        graph = s.graph
        return rpc_results.SessionInfo(
            key=s.key, config=s.config,
            derivations=len(graph.derivations) if graph is not None else None,
            errors=len(graph.errors) if graph is not None else None,
            memory_bytes=s.memory_bytes, busy=self.busy, evaluations=s.evaluations,
            evaluated_at=s.evaluated_at, idle_seconds=time.monotonic() - self.last_used,
            warm_workers=self.pool.idle, last_summary=s.last_summary,
        )


class SessionRegistry:
    """All warm sessions. Run `run` in a long-lived nursery first (it owns the pools)."""

    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.entries: dict[str, SessionEntry] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hosts the session pools and cools idle ones down, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            if self.settings.warm_seconds <= 0:
                await trio.sleep_forever()  # nothing is ever kept warm
            period = max(0.05, min(1.0, self.settings.warm_seconds / 4))
            while True:
                await trio.sleep(period)
                await self._cool_down()

    # ---- lookup -----------------------------------------------------------------------
    def peek(self, key: str) -> SessionEntry | None:
        """The session of `key`, if any, left where it is in the LRU order."""
        return self.entries.get(key)

    def get(self, key: str) -> SessionEntry | None:
        entry = self.entries.get(key)
        if entry is not None:
            entry.touch()
        return entry

    def ensure_entry(self, config: EvalConfig) -> SessionEntry:
        """The session of `config`, made (not evaluated yet) if there is none."""
        return self.entries.get(config.session_key()) or self._new_entry(config)

    def spawn(self, task: Callable[..., Awaitable[object]], *args: object) -> None:
        """Runs `task(*args)` beside the sessions, until it ends or the registry stops (a `watch`)."""
        assert self._nursery is not None, "SessionRegistry.run is not running"
        self._nursery.start_soon(task, *args)

    def find(self, key_or_prefix: str) -> SessionEntry | None:
        """A session by its key or a unique prefix of it (as `drop` accepts)."""
        if key_or_prefix in self.entries:
            return self.entries[key_or_prefix]
        found = [e for k, e in self.entries.items() if k.startswith(key_or_prefix)]
        return found[0] if len(found) == 1 else None

    # ---- evaluation -------------------------------------------------------------------
    async def evaluate(self, config: EvalConfig, sink: Callable[[bytes], None] | None) -> tuple[SessionEntry, Summary]:
        """Evaluates `config` into its session (made if needed); the result becomes the warm graph.

        Raises InputError when the input cannot load (a session that never had a graph is
        then forgotten)."""
        return await self.evaluate_with(config, lambda session: session.evaluate(sink))

    async def evaluate_with(self, config: EvalConfig, run: Callable[[Session], Awaitable[T]]) -> tuple[SessionEntry, T]:
        """Runs `run(session)`, one evaluation, on `config`'s session (made if needed) under its
        lock; a session left with no graph (its first evaluation failed) is forgotten."""
        while True:
            entry = self.ensure_entry(config)
            async with entry.lock:
                if entry.removed:  # dropped or forgotten while we waited
                    continue
                try:
                    result = await self._run(entry, config, functools.partial(run, entry.session))
                finally:
                    if entry.session.graph is None:
                        self._remove(entry)
            self._evict(keep=entry)
            return entry, result

    async def diff(self, entry: SessionEntry, config: EvalConfig) -> tuple[Diff, Summary]:
        """Re-evaluates a warm session and compares; SessionError when it went away meanwhile."""
        async def run(session: Session) -> tuple[Diff, Summary]:
            diff = await session.diff_once()
            assert session.last_summary is not None
            return diff, session.last_summary

        return await self.reevaluate(entry, config, run)

    async def reevaluate(self, entry: SessionEntry, config: EvalConfig, run: Callable[[Session], Awaitable[T]]) -> T:
        """Runs `run(session)`, one evaluation, on the warm session of `entry` under its lock;
        SessionError when it went away meanwhile."""
        async with entry.lock:
            if entry.removed or entry.session.graph is None:
                raise SessionError("the session was dropped")
            result = await self._run(entry, config, functools.partial(run, entry.session))
        self._evict(keep=entry)
        return result

    async def _run(self, entry: SessionEntry, config: EvalConfig, run: Callable[[], Awaitable[T]]) -> T:
        """One evaluation under the entry's lock: cold pool during the run, warm after."""
        entry.touch()
        await self._ensure_pool(entry)
        entry.session.reconfigure(config)
        entry.pool.resize(0)  # no refills competing with this run for the CPU
        try:
            result = await run()
            _settle_heap()
        finally:
            entry.touch()
            # a run forks its workers from one template process: that one is what is kept warm
            # (after a failed run too: a watch retries after the next edit)
            self._warm(entry, config.processes_per_run)
        return result

    def _new_entry(self, config: EvalConfig) -> SessionEntry:
        pool = WorkerPool(list(self.settings.worker_command) if self.settings.worker_command else None)
        entry = SessionEntry(Session(config, pool, indexed=True))  # indexed: queries read the index
        self.entries[entry.key] = entry
        log.info("new session %s for %s", entry.key[:12], config.describe())
        return entry

    async def _ensure_pool(self, entry: SessionEntry) -> None:
        if entry.pool_scope is None:
            assert self._nursery is not None, "SessionRegistry.run is not running"
            entry.pool_scope = await self._nursery.start(self._host_pool, entry.pool)

    @staticmethod
    async def _host_pool(pool: WorkerPool, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            await pool.serve(task_status=_Relay(task_status, scope))

    # ---- warmth -----------------------------------------------------------------------
    def _warm(self, entry: SessionEntry, workers: int) -> None:
        """Keeps `workers` idle processes for `entry`, within the daemon-wide cap (LRU first loses)."""
        cap = self.settings.max_warm_workers
        if self.settings.warm_seconds <= 0 or cap <= 0:
            return
        entry.pool.resize(min(workers, cap))
        others = sorted((e for e in self.entries.values() if e is not entry and e.pool.size), key=lambda e: e.last_used)
        total = entry.pool.size + sum(e.pool.size for e in others)
        for other in others:
            if total <= cap:
                break
            total -= other.pool.size
            self._cool(other)

    def _cool(self, entry: SessionEntry) -> None:
        entry.pool.resize(0)
        if self._nursery is not None and entry.pool.idle:
            self._nursery.start_soon(entry.pool.shrink, 0)

    async def _cool_down(self) -> None:
        now = time.monotonic()
        for entry in list(self.entries.values()):
            if entry.busy or not (entry.pool.size or entry.pool.idle):
                continue
            if now - entry.session.last_eval_end >= self.settings.warm_seconds:
                log.debug("session %s: workers cooled down", entry.key[:12])
                await entry.pool.shrink(0)

    # ---- bounds -----------------------------------------------------------------------
    def memory_bytes(self) -> int:
        return sum(e.session.memory_bytes for e in self.entries.values())

    def _evict(self, keep: SessionEntry) -> None:
        """Drops least recently used idle sessions while over the count or memory bound."""
        s = self.settings
        while len(self.entries) > s.max_sessions or self.memory_bytes() > s.max_session_memory:
            victims = [e for e in self.entries.values() if e is not keep and not e.busy]
            if not victims:
                if self.memory_bytes() > s.max_session_memory:
                    log.warning("session %s alone exceeds the session memory bound (%d MiB)",
                                keep.key[:12], keep.session.memory_bytes >> 20)
                return
            victim = min(victims, key=lambda e: e.last_used)
            log.info("evicting session %s (%s, least recently used)", victim.key[:12], victim.session.config.describe())
            self._remove(victim)

    def drop(self, entry: SessionEntry) -> None:
        """Forgets a session and stops its workers; SessionError while it is evaluating."""
        if entry.busy:
            raise SessionError(f"session {entry.key[:12]} is being evaluated; drop it when that ends")
        self._remove(entry)

    def _remove(self, entry: SessionEntry) -> None:
        entry.removed = True
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
        if entry.pool_scope is not None:
            entry.pool_scope.cancel()  # WorkerPool.serve closes its idle workers on the way out

    # ---- numbers for `status` ---------------------------------------------------------
    def worker_stats(self) -> tuple[int, int]:
        """Idle (warm) worker processes now, and workers started so far, over all sessions."""
        pools = [e.pool for e in self.entries.values()]
        return sum(p.idle for p in pools), sum(p.started for p in pools)


def _settle_heap() -> None:
    """Moves what is alive now (the new graph) out of the garbage collector's sight.

    A warm graph is hundreds of thousands of long-lived objects; a full collection over them
    takes ~0.1 s per 100k derivations and would land in the middle of some query. After an
    evaluation we collect once (only objects since the last freeze are traversed) and freeze
    the survivors. Frozen objects are still freed by reference counting (graphs hold no
    cycles); only a cycle formed among them later would stay, a small bounded cost.
    """
    gc.collect()
    gc.freeze()


class _Relay:
    """Passes a pool's `started()` on as the cancel scope that stops it."""

    def __init__(self, task_status: trio.TaskStatus[trio.CancelScope], scope: trio.CancelScope) -> None:
        self._status, self._scope = task_status, scope

    def started(self, value: object = None) -> None:
        self._status.started(self._scope)
