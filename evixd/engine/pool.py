"""Warm worker processes: started and with Nix initialised, waiting for `setup`.

A worker that has loaded an input holds that input's files as they were, so it is never
reused for another run; what the pool saves is the process start-up (interpreter, imports,
Nix init), and it keeps `size` fresh processes ready in the background. Nix reads some of
its environment only when it starts (the GC heap's size: worker_launch.heap_environment),
so the pool's processes are started with the environment the last run asked for.
"""

from __future__ import annotations

import logging

import trio

from .local_worker import LocalWorker, start_local_worker

log = logging.getLogger("evix.pool")


class WorkerPool:
    """Hands out started worker processes. Run `serve` in a long-lived nursery first."""

    def __init__(self, command: list[str] | None = None, size: int = 0) -> None:
        self.command = command
        self.size = size
        self._idle: list[LocalWorker] = []
        self._nursery: trio.Nursery | None = None
        self._wanted = trio.Event()
        self.started = 0
        self.env: dict[str, str] = {}  # what the idle processes were started with

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Owns the workers' background tasks and refills the pool until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    while len(self._idle) < self.size:
                        self._idle.append(await self._spawn())
                    self._wanted = trio.Event()
                    await self._wanted.wait()
        finally:
            with trio.CancelScope(shield=True):
                await self.shrink(0)

    async def _spawn(self) -> LocalWorker:
        assert self._nursery is not None, "WorkerPool.serve is not running"
        worker = start_local_worker(self._nursery, self.command, extra_env=self.env)
        self.started += 1
        return worker

    async def acquire(self, env: dict[str, str]) -> LocalWorker:
        """A started worker whose process has `env` (warm if one is idle); the caller sets it
        up and closes it (`async with`). Idle ones started with another are closed."""
        if env != self.env:
            self.env = env
            while self._idle:
                await self._idle.pop().aclose()
        worker = self._idle.pop() if self._idle else await self._spawn()
        self._wanted.set()
        return worker

    def resize(self, size: int) -> None:
        """Keep `size` idle workers from now on (extra ones are closed by `shrink`)."""
        self.size = size
        self._wanted.set()

    async def shrink(self, size: int) -> None:
        self.size = size
        while len(self._idle) > size:
            await self._idle.pop().aclose()

    @property
    def idle(self) -> int:
        return len(self._idle)
