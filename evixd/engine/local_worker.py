"""One local worker subprocess, seen from the master.

Start-up (Python, imports, Nix init) happens before `setup`, so an idle process can wait
warm in a pool. While a batch runs, a watchdog reads the shared progress word (which item
is in flight) and the worker's RSS, and kills it on the per-item timeout or the memory
limit; the caller then learns which item was in flight and why the worker died.
"""

from __future__ import annotations

import collections
import logging
import mmap
import os
import signal
import struct
import subprocess
import time
from typing import Any

import orjson
import psutil
import trio

from evixd.worker_launch import SpawnedWorker, spawn
from protocol import wire
from protocol.config import EvalConfig

from .errors import WorkerStartError

log = logging.getLogger("evix.worker")

WATCHDOG_PERIOD = 0.2


class WorkerDied(Exception):
    """The worker ended during a batch; `reason` says how (signal, memory limit, timeout...).
    Which item it was on: `WorkerProcess.in_flight`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _take_fd(pipe: Any) -> int:
    fd = os.dup(pipe.fileno())
    pipe.close()
    return fd


class _Child:
    """A spawned worker under trio: its pipes as trio streams, its exit awaited on a pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin = trio.lowlevel.FdStream(_take_fd(popen.stdin))
        self.stdout = trio.lowlevel.FdStream(_take_fd(popen.stdout))
        self.stderr = trio.lowlevel.FdStream(_take_fd(popen.stderr))

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        if self.popen.poll() is None:
            try:
                pidfd = os.pidfd_open(self.pid)
            except ProcessLookupError:
                pidfd = -1
            if pidfd >= 0:
                try:
                    await trio.lowlevel.wait_readable(pidfd)
                finally:
                    os.close(pidfd)
        return self.popen.wait()

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _FrameReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk

    async def read(self) -> bytes:
        await self._fill(4)
        hsize = wire.header_size(bytes(self.buf[:4]))
        await self._fill(hsize)
        total = wire.frame_size(bytes(self.buf[:hsize]))
        await self._fill(total)
        frame = bytes(self.buf[:total])
        del self.buf[:total]
        return frame


class WorkerProcess:
    """A started worker process; `setup` then `run_batch` any number of times, then `close`."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command
        self.process: _Child | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._progress_fd = -1
        self._progress: mmap.mmap | None = None
        self._reader: _FrameReader | None = None
        self._killed_for: str | None = None
        self._ps: psutil.Process | None = None
        self.config = EvalConfig()
        self._outstanding = 0  # batches sent and not answered

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    async def start(self, nursery: trio.Nursery, spawned: SpawnedWorker | None = None) -> None:
        """Adopts `spawned` (or spawns a worker now); its stderr is forwarded to our log."""
        spawned = spawned or spawn(self.command)
        self._progress_fd = spawned.progress_fd
        self._progress = mmap.mmap(self._progress_fd, 16)
        self.process = _Child(spawned.process)
        self._ps = psutil.Process(self.process.pid)
        self._reader = _FrameReader(self.process.stdout)
        nursery.start_soon(self._forward_stderr)

    async def _forward_stderr(self) -> None:
        assert self.process is not None
        pending = b""
        try:
            async for chunk in self.process.stderr:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    self.stderr_tail.append(text)
                    log.warning("worker %d: %s", self.pid, text, extra={"worker_line": text})
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def setup(self, config: EvalConfig) -> None:
        """Sends the config; raises WorkerStartError (with Nix's message when the input can't load).
        Its timeout and memory limit then apply to every batch."""
        assert self.process is not None and self._reader is not None
        self.config = config
        await self._send(wire.Setup(wire.PROTOCOL_VERSION, orjson.dumps(config.to_json())))
        try:
            reply = wire.decode_response(await self._reader.read())
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            await self._reap()
            raise WorkerStartError(f"worker exited during start-up: {self._exit_description()}", fatal=False)
        if isinstance(reply, wire.Fatal):
            raise WorkerStartError(reply.message, fatal=True)
        if not isinstance(reply, wire.Ready):
            raise WorkerStartError(f"worker answered setup with {type(reply).__name__}", fatal=False)
        log.debug("worker %d ready (Nix %s)", reply.pid, reply.nix_version)

    async def _send(self, msg: wire.Request) -> None:
        assert self.process is not None
        await self.process.stdin.send_all(wire.encode_request(msg))

    def in_flight(self, batch: int) -> int | None:
        """The flat index of the item of `batch` the worker was on (None: it had not started it)."""
        assert self._progress is not None
        seen_batch, index_plus_one = struct.unpack_from("<QQ", self._progress, 0)
        return index_plus_one - 1 if seen_batch == batch and index_plus_one else None

    async def send_batch(self, batch: int, items: bytes) -> None:
        """Queues a batch on the worker, which runs its batches in order; WorkerDied if it is gone."""
        assert self.process is not None
        self._outstanding += 1
        try:
            await self._send(wire.Work(batch, items))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._reap()
            raise WorkerDied(self._killed_for or self._exit_description()) from None

    async def receive_result(self, batch: int) -> wire.Result:
        """The answer to `batch` (the oldest one sent); WorkerDied if the worker ends first
        (crash, memory limit, timeout)."""
        assert self._reader is not None
        self._killed_for = None
        frame: bytes | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watchdog)
            try:
                frame = await self._reader.read()
            except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                nursery.cancel_scope.cancel()
        if frame is None:
            await self._reap()
            raise WorkerDied(self._killed_for or self._exit_description())
        self._outstanding -= 1
        reply = wire.decode_response(frame)
        if not isinstance(reply, wire.Result) or reply.batch != batch:
            await self._reap_now()
            raise WorkerDied(f"protocol error: unexpected answer {type(reply).__name__}")
        return reply

    async def _watchdog(self) -> None:
        """Kills the worker when its RSS passes --max-memory while it evaluates (between items
        the worker checks itself and asks to be recycled) or when one item runs past --timeout."""
        assert self._progress is not None and self._ps is not None
        max_memory_mb, timeout = self.config.max_memory_mb, self.config.item_timeout
        limit = max_memory_mb << 20
        last, since = bytes(self._progress[:16]), time.monotonic()
        while True:
            await trio.sleep(WATCHDOG_PERIOD)
            try:
                rss = self._ps.memory_info().rss
            except psutil.Error:
                return
            if rss > limit:
                self._kill(f"worker killed: memory limit of {max_memory_mb} MiB exceeded "
                           f"(RSS {rss >> 20} MiB) while evaluating this attribute")
                return
            if timeout is not None:
                now_at = bytes(self._progress[:16])
                if now_at != last:
                    last, since = now_at, time.monotonic()
                elif time.monotonic() - since > timeout:
                    self._kill(f"evaluation timed out after {timeout:g} s; worker killed")
                    return

    async def _reap_now(self) -> None:
        self._kill("protocol error")
        await self._reap()

    def _kill(self, reason: str) -> None:
        self._killed_for = reason
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def _reap(self) -> None:
        if self.process is None:
            return
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await self.process.wait()
        if self.process.returncode is None:
            self._kill("worker did not exit")
            with trio.CancelScope(shield=True):
                await self.process.wait()

    def _exit_description(self) -> str:
        rc = self.process.returncode if self.process else None
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

    async def close(self) -> None:
        """Asks the worker to stop; kills it after a grace period. Safe to call twice."""
        if self.process is None:
            return
        with trio.CancelScope(shield=True):
            if self.process.returncode is None and self._outstanding:
                self._kill("closed while evaluating")  # a cancelled run: don't wait for its batch
            if self.process.returncode is None:
                try:
                    with trio.move_on_after(1):
                        await self._send(wire.Shutdown())
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                with trio.move_on_after(2):
                    await self.process.wait()
                if self.process.returncode is None:
                    try:
                        self.process.kill()
                    except ProcessLookupError:
                        pass
                    await self.process.wait()
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                try:
                    await stream.aclose()
                except Exception:
                    pass
        if self._progress is not None:
            self._progress.close()
            os.close(self._progress_fd)
            self._progress = None
