"""A local worker: one subprocess on this machine, seen from the master.

Start-up (Python, imports, Nix init) happens before `setup`, so a started process can wait
warm in a pool. While a batch runs, a watchdog reads the in-flight word (which item the
worker is on) and the worker's RSS, and kills it on the per-item timeout or the memory
limit; the scheduler then learns which item was in flight and why the worker died.

Every way a worker ends goes through `aclose`: the one teardown (shutdown, bounded wait,
SIGKILL, pipes and shared memory closed), reached by leaving a WorkerSource's `open()`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol

import orjson
import trio

from evixd.worker_launch import SpawnedWorker, heap_environment, spawn
from protocol import template as template_channel
from protocol import wire
from protocol.config import EvalConfig
from protocol.in_flight import InFlightWord

from .errors import WarmingStopped, WorkerStartError
from .memory_watch import Gone, MemoryWatch
from .oom import oom_kills
from .worker import Worker, WorkerDied, WorkerSource

log = logging.getLogger("evix.worker")

WATCHDOG_PERIOD = 0.2
SHUTDOWN_GRACE = 2.0  # seconds a worker gets to exit after `shutdown` before SIGKILL
EXIT_GRACE = 5.0  # seconds a worker whose pipe closed gets to finish exiting
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
"""What a write to (or read from) a worker's pipe raises once the worker is gone."""


def _take_fd(pipe: Any) -> int:
    fd = os.dup(pipe.fileno())
    pipe.close()
    return fd


class _FrameReader:
    """The worker's frames from its stdout (the parsing is protocol.wire's)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.parser = wire.FrameParser()

    async def read(self) -> bytes:
        while (frame := self.parser.next_frame()) is None:
            chunk = await self.stream.receive_some(1 << 20)
            if not chunk:
                raise EOFError
            self.parser.feed(chunk)
        return frame


class ProcessHandle(Protocol):
    """A worker process as the master can watch it: spawned by us, or forked by a template."""

    pid: int
    lost_with_template: bool
    """It ended because the template it was forked from did (no fault of its own)."""

    def returncode(self) -> int | None:
        """As subprocess reports it (negative: killed by that signal); None while it runs."""

    async def wait(self) -> None:
        """Returns once the process has ended and `returncode` is known."""


class SpawnedProcess:
    """A child of ours: its exit awaited on a pidfd, then reaped."""

    lost_with_template = False

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            pidfd = -1
        if pidfd >= 0:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        self.popen.wait()


class LocalWorker(Worker):
    """A started worker process: `setup`, then batches, then `aclose` (or `async with`)."""

    def __init__(self, process: ProcessHandle, stdin: int, stdout: int, stderr: int, in_flight: InFlightWord,
                 nursery: trio.Nursery) -> None:
        """Takes over the fds of the process's pipes and in-flight word; its stderr is
        forwarded to our log by a task in `nursery`."""
        self.process = process
        self.pid = process.pid
        self._stdin = trio.lowlevel.FdStream(stdin)
        self._stdout = trio.lowlevel.FdStream(stdout)
        self._stderr = trio.lowlevel.FdStream(stderr)
        self._in_flight: InFlightWord | None = in_flight
        self._reader = _FrameReader(self._stdout)
        self._memory = MemoryWatch(self.pid)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.config = EvalConfig()
        self._killed_for: str | None = None
        self._killed_for_memory = False
        self._oom_kills_at_start: int | None = None  # taken at setup: the run's start
        self._outstanding = 0  # batches sent and not answered
        self._closed = False
        self.ready: wire.Ready | None = None  # its answer to setup (Nix version, store dir)
        self.control: socket.socket | None = None  # a spawned process's control socket (templates use it)
        nursery.start_soon(self._forward_stderr)

    @classmethod
    def adopt(cls, spawned: SpawnedWorker, nursery: trio.Nursery) -> LocalWorker:
        """The worker of a process started by worker_launch.spawn."""
        popen = spawned.process
        fds = [_take_fd(pipe) for pipe in (popen.stdin, popen.stdout, popen.stderr)]
        worker = cls(SpawnedProcess(popen), *fds, spawned.in_flight, nursery)
        worker.control = spawned.control
        return worker

    @property
    def name(self) -> str:
        return f"worker {self.pid}"

    async def __aenter__(self) -> LocalWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- conversation -----------------------------------------------------------------
    async def setup(self, config: EvalConfig, *, template: bool = False) -> None:
        """Sends the config; raises WorkerStartError (with Nix's message when the input can't load).
        Its timeout and memory limit then apply to every batch. A template only loads the
        input and then forks workers (template.py)."""
        self.config = config
        self._oom_kills_at_start = oom_kills()
        setup = wire.Setup(wire.PROTOCOL_VERSION, orjson.dumps(config.to_json()), template)
        try:
            await self._stdin.send_all(wire.encode_request(setup))
            reply = wire.decode_response(await self._setup_reply(watched=template and config.warm_template))
        except (EOFError, wire.ProtocolError, *_GONE):
            await self._reap(EXIT_GRACE)
            if template and self._killed_for is not None:  # by the warming watchdog
                raise WarmingStopped(self._killed_for, fatal=False) from None
            raise WorkerStartError(f"worker exited during start-up: {self._exit_description()}", fatal=False) from None
        if isinstance(reply, wire.Fatal):
            raise WorkerStartError(reply.message, fatal=True)
        if not isinstance(reply, wire.Ready):
            raise WorkerStartError(f"worker answered setup with {type(reply).__name__}", fatal=False)
        self.ready = reply
        log.debug("worker %d ready (Nix %s)", reply.pid, reply.nix_version)

    async def _setup_reply(self, *, watched: bool) -> bytes:
        """The answer to setup. A template that warms evaluates an item before it answers, so
        it is held to the memory limit as a fresh fork evaluating that item would be (its
        growth since warming began): killed past it (WarmingStopped then), the item is left
        to the workers."""
        if not watched:
            return await self._reader.read()
        frame: bytes | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.watch_warming, 0)
            try:
                frame = await self._reader.read()
            except (EOFError, *_GONE):
                pass
            finally:
                nursery.cancel_scope.cancel()
        if frame is None:
            raise EOFError
        return frame

    async def send_batch(self, batch: int, items: bytes) -> None:
        self._outstanding += 1
        try:
            await self._stdin.send_all(wire.encode_request(wire.Work(batch, items)))
        except _GONE:
            await self._died(None)

    async def receive_result(self, batch: int) -> wire.Result:
        self._killed_for, self._killed_for_memory = None, False
        frame: bytes | None = None
        malformed: str | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watchdog)
            try:
                frame = await self._reader.read()
            except (EOFError, *_GONE):
                pass
            except wire.ProtocolError as e:
                malformed = str(e)
            finally:
                nursery.cancel_scope.cancel()
        if frame is None:
            await self._died(malformed)
        try:
            reply = wire.decode_response(frame)
        except wire.ProtocolError as e:
            reply, malformed = None, str(e)
        if not isinstance(reply, wire.Result) or reply.batch != batch:
            await self._died(malformed or f"unexpected answer {type(reply).__name__}")
        self._outstanding -= 1
        return reply

    def in_flight(self, batch: int) -> int | None:
        return self._in_flight.item_of(batch) if self._in_flight is not None else None

    async def _died(self, malformed: str | None) -> NoReturn:
        """Raises WorkerDied saying why; a worker that sent garbage is killed first."""
        if malformed is not None:
            self._kill(f"worker sent a malformed answer ({malformed}); worker killed")
        await self._reap(EXIT_GRACE)
        if self.process.lost_with_template:
            raise WorkerDied("its template process ended", innocent=True)
        if self._killed_for is not None:
            raise WorkerDied(self._killed_for, memory=self._killed_for_memory)
        # a SIGKILL that is not ours counts as memory when the kernel's OOM killer acted meanwhile
        oom = self.process.returncode() == -signal.SIGKILL and (oom_kills() or 0) > (self._oom_kills_at_start or 0)
        raise WorkerDied(self._exit_description(), memory=oom)

    # ---- watchdog ---------------------------------------------------------------------
    async def _watchdog(self) -> None:
        """Kills the worker when its own memory (USS, protocol/own_memory.py) passes
        --max-memory while it evaluates (between items the worker checks itself and asks to be
        recycled) or when one item runs past --timeout."""
        assert self._in_flight is not None
        word = self._in_flight
        timeout = self.config.item_timeout
        last, since = word.snapshot(), time.monotonic()

        def late() -> str | None:
            nonlocal last, since
            if timeout is None:
                return None
            if (now_at := word.snapshot()) != last:
                last, since = now_at, time.monotonic()
            elif time.monotonic() - since > timeout:
                return f"evaluation timed out after {timeout:g} s; worker killed"
            return None

        await self._guard("while evaluating this attribute", self._memory.over, late)

    async def watch_warming(self, step: int) -> None:
        """Waits for the template to mark that its warming `step` began, then kills it once
        its RSS has grown by more than --max-memory since (what a fresh fork evaluating that
        item would own), or warming took more than --timeout."""
        assert self._in_flight is not None
        while self._in_flight.item_of(template_channel.WARMING) != step:
            await trio.sleep(WATCHDOG_PERIOD / 4)
        began = time.monotonic()
        try:
            base = self._memory.rss()
        except Gone:
            return
        timeout = self.config.item_timeout

        def late() -> str | None:
            if timeout is not None and time.monotonic() - began > timeout:
                return f"warming the template took more than --timeout {timeout:g} s; template killed"
            return None

        await self._guard("while warming the template", functools.partial(self._memory.grown_over, base), late)

    async def _guard(self, doing: str, over: Callable[[int], str | None], late: Callable[[], str | None]) -> None:
        """Every WATCHDOG_PERIOD: kills the process once `over(limit)` says how it passed
        --max-memory (its own memory; a warming template: its RSS growth) or `late()` says why
        it took too long; returns then, or when the process is gone."""
        max_memory_mb = self.config.max_memory_mb
        while True:
            await trio.sleep(WATCHDOG_PERIOD)
            try:
                if (passed := over(max_memory_mb << 20)) is not None:
                    self._kill(f"worker killed: memory limit of {max_memory_mb} MiB exceeded ({passed}) {doing}",
                               memory=True)
                    return
                if (reason := late()) is not None:
                    self._kill(reason)
                    return
            except Gone:
                return

    async def _forward_stderr(self) -> None:
        pending = b""
        try:
            async for chunk in self._stderr:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    self.stderr_tail.append(text)
                    log.warning("worker %d: %s", self.pid, text, extra={"worker_line": text})
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # ---- ending -----------------------------------------------------------------------
    def _kill(self, reason: str, *, memory: bool = False) -> None:
        """SIGKILL, remembering why (the first reason given wins until the next batch)."""
        if self._killed_for is None:
            self._killed_for, self._killed_for_memory = reason, memory
        if self.process.returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def _reap(self, grace: float) -> None:
        """Waits up to `grace` seconds for the process to exit, then kills it and waits."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(grace):
                await self.process.wait()
            if self.process.returncode() is None:
                self._kill(f"worker did not exit within {grace:g} s")
                await self.process.wait()

    def _exit_description(self) -> str:
        rc = self.process.returncode()
        tail = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        suffix = f" (last words: {tail.strip()})" if tail else ""
        if rc is None:
            return "worker stopped answering" + suffix
        if rc < 0:
            sig = -rc
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
            hint = {
                signal.SIGKILL: "killed from outside: memory limit or out of memory?",
                signal.SIGSEGV: "segmentation fault: stack overflow?",
                signal.SIGABRT: "aborted",
                signal.SIGBUS: "bus error",
            }.get(sig, "")
            return f"worker killed by {name}{': ' + hint if hint else ''}" + suffix
        return f"worker exited with status {rc}" + suffix

    async def aclose(self) -> None:
        """The one teardown: asks the worker to stop (kills one that is still evaluating: a
        cancelled run does not wait for its batch), reaps it, closes its pipes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._outstanding:
                self._kill("closed while evaluating")
            if self.process.returncode() is None:
                with contextlib.suppress(*_GONE), trio.move_on_after(1):
                    await self._stdin.send_all(wire.encode_request(wire.Shutdown()))
            await self._reap(SHUTDOWN_GRACE)
            for stream in (self._stdin, self._stdout, self._stderr):
                with contextlib.suppress(Exception):
                    await stream.aclose()
        if self._in_flight is not None:
            self._in_flight.close()
            self._in_flight = None
        if self.control is not None:
            self.control.close()


def start_local_worker(nursery: trio.Nursery, command: list[str] | None = None,
                       spawned: SpawnedWorker | None = None, extra_env: dict[str, str] | None = None) -> LocalWorker:
    """Adopts `spawned` (or spawns a worker now), with its stderr forwarded by `nursery`."""
    return LocalWorker.adopt(spawned or spawn(command, extra_env), nursery)


class SpawnedWorkers(WorkerSource):
    """A run's workers as fresh processes, each loading the input itself: those started
    ahead of the run first, then warm ones from the pool's `take` (given the environment
    the run's processes need) when there is one."""

    def __init__(self, config: EvalConfig, nursery: trio.Nursery, *, spawned: list[SpawnedWorker] | None = None,
                 take: Callable[[dict[str, str]], Awaitable[LocalWorker]] | None = None) -> None:
        self.config = config
        self.nursery = nursery
        self.spawned = list(spawned or ())
        self.take = take
        self.command = list(config.worker_command) if config.worker_command else None
        self.env = heap_environment(config)

    async def start(self) -> LocalWorker:
        """A started process, not set up yet."""
        if self.spawned:
            return start_local_worker(self.nursery, spawned=self.spawned.pop())
        if self.take is not None:
            return await self.take(self.env)
        return start_local_worker(self.nursery, self.command, extra_env=self.env)

    @contextlib.asynccontextmanager
    async def open(self, *, fresh: bool = False) -> AsyncIterator[LocalWorker]:
        async with await self.start() as worker:
            await worker.setup(self.config)
            yield worker

    async def aclose(self) -> None:
        """Processes started ahead of the run and never used are stopped."""
        while self.spawned:
            async with start_local_worker(self.nursery, spawned=self.spawned.pop()):
                pass
