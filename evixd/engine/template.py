"""Workers forked from a template: the input is loaded once per run, a worker costs a fork.

The template is a worker process set up with `template=True` (evix_worker/template.py): it
loads and warms the input, then forks a worker whenever asked on its control socket
(protocol/template.py), handing each child the pipes and in-flight word we made for it.
The child is then an ordinary LocalWorker to us. Its exit status comes from the template,
which is its parent.

If the template cannot fork (it says so once), the rest of the run falls back to spawned
workers. If the template dies, the next worker starts a new one. An item retried alone
gets a fork too, warmed or not: the memory limit counts a fork's own pages, not the ones it
shares with the template (protocol/own_memory.py), so a fork is as fresh as a new process.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator

import trio

from protocol import template
from protocol.config import EvalConfig
from protocol.in_flight import InFlightWord

from .errors import WarmingStopped, WorkerStartError
from .local_worker import LocalWorker, SpawnedWorkers
from .worker import WorkerSource

log = logging.getLogger("evix.template")

MAX_WARMS = 8  # heavy items a run's template evaluates for its forks, beyond its first derivation


class ForkedProcess:
    """A worker forked by a template: alive until the template reports its exit."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._returncode: int | None = None
        self._ended = trio.Event()
        self.lost_with_template = False  # it ended because its template did

    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> None:
        await self._ended.wait()

    def ended(self, returncode: int) -> None:
        if self._returncode is None:
            self._returncode = returncode
        self._ended.set()


class Template:
    """One template process of a run, and the children it forked for us."""

    def __init__(self, process: LocalWorker, nursery: trio.Nursery) -> None:
        assert process.control is not None, "a template needs the control socket of a spawned worker"
        self.process = process
        self.nursery = nursery
        self.control = trio.socket.from_stdlib_socket(process.control)
        process.control = None  # ours now (closed in aclose)
        self.children: dict[int, ForkedProcess] = {}
        self.alive = True
        self._lock = trio.Lock()  # one request at a time: replies come in request order
        self._warms = 0  # warm requests sent (the template's step 0 is its first warming)
        self.settled = False  # asked to settle its first warming (ForkedWorkers.open)
        self._replies_send, self._replies = trio.open_memory_channel[template.TemplateEvent](1)

    async def listen(self) -> None:
        """Reads the template's events until its control socket closes (the template ended)."""
        try:
            while True:
                packet = await self.control.recv(template.MAX_PACKET)
                if not packet:
                    break
                event = template.decode_event(packet)
                if isinstance(event, template.Exited):
                    child = self.children.pop(event.pid, None)
                    if child is not None:
                        child.ended(os.waitstatus_to_exitcode(event.status))
                else:
                    await self._replies_send.send(event)
        except (OSError, ValueError) as e:
            log.warning("template %d: control channel failed: %s", self.process.pid, e)
        finally:
            self.alive = False
            for child in self.children.values():  # they die with it (die_with_parent)
                child.lost_with_template = True
                child.ended(-9)
            self.children.clear()
            self._replies_send.close()  # a fork waiting for its reply learns it now

    async def fork(self) -> LocalWorker:
        """A new worker, forked; WorkerStartError when the template cannot fork."""
        async with self._lock:
            if not self.alive:
                raise WorkerStartError("the template process has ended", fatal=False)
            ours, theirs = _pipes()
            word = InFlightWord.create()
            try:
                await self.control.sendmsg(
                    [template.FORK], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [*theirs, word.fd]))]
                )
                reply: template.TemplateEvent | None = await self._replies.receive()
            except (trio.EndOfChannel, trio.BrokenResourceError, OSError):
                reply = None
            except BaseException:
                _close(ours, word)
                raise
            finally:
                for fd in theirs:
                    os.close(fd)
            if not isinstance(reply, template.Forked):
                _close(ours, word)
                message = reply.message if isinstance(reply, template.ForkFailed) else "the template process has ended"
                raise WorkerStartError(message, fatal=False)
            child = self.children[reply.pid] = ForkedProcess(reply.pid)
        return LocalWorker(child, *ours, word, self.nursery)

    async def warm(self, attr_path: list[str]) -> None:
        """Has the template evaluate `attr_path` for its later forks (evix_worker/warming.py),
        held to the memory limit and --timeout meanwhile: killed past them, it has ended
        (its forks end with it and their items go back to the queue)."""
        packet = template.encode_warm(attr_path)
        if len(packet) > template.MAX_PACKET:
            return
        async with self._lock:
            if not self.alive:
                return
            self._warms += 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.process.watch_warming, self._warms)
                try:
                    await self.control.send(packet)
                    await self._replies.receive()
                except (trio.EndOfChannel, trio.BrokenResourceError, OSError):
                    pass
                finally:
                    nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        await self.process.aclose()  # its children get SIGKILL from the kernel (die_with_parent)
        self.control.close()


def _close(fds: tuple[int, ...], word: InFlightWord) -> None:
    for fd in fds:
        os.close(fd)
    word.close()


def _pipes() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(our ends: child's stdin to write, stdout and stderr to read), (the child's ends)."""
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
    stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
    return (stdin_w, stdout_r, stderr_r), (stdin_r, stdout_w, stderr_w)


class ForkedWorkers(WorkerSource):
    """A run's workers, forked from its template (started on first use), or spawned when
    forking is off or proved impossible here."""

    def __init__(self, config: EvalConfig, nursery: trio.Nursery, processes: SpawnedWorkers) -> None:
        self.config = config
        self.nursery = nursery
        self.processes = processes
        self.forking = config.fork_workers
        self._template: Template | None = None
        self._starting = trio.Lock()
        self._warmed: set[tuple[str, ...]] = set()
        self._warm_killed = False
        self._replacing = False  # a worker of ours has ended: the next forks replace workers

    async def _get_template(self) -> Template:
        async with self._starting:
            if self._template is None or not self._template.alive:
                if self._template is not None:
                    await self._template.aclose()
                    self._template = None
                process = await self._start_template()
                self._template = Template(process, self.nursery)
                self.nursery.start_soon(self._template.listen)
            return self._template

    async def _start_template(self) -> LocalWorker:
        """A template set up for our config; one that passes the memory limit while warming
        is replaced by one that does not warm, for the rest of the run (and its forks)."""
        while True:
            process = await self.processes.start()
            try:
                await process.setup(self.config, template=True)
            except WarmingStopped as e:
                await process.aclose()
                log.info("%s; forking from a template that does not warm", e)
                self.config = dataclasses.replace(self.config, warm_template=False)
                continue
            except BaseException:
                await process.aclose()
                raise
            return process

    @contextlib.asynccontextmanager
    async def open(self, *, fresh: bool = False) -> AsyncIterator[LocalWorker]:
        if not self.forking:
            async with self.processes.open() as worker:
                yield worker
            return
        tpl = await self._get_template()
        if self._replacing and not tpl.settled:
            tpl = await self._settle(tpl)
        try:
            worker = await tpl.fork()
        except WorkerStartError as e:
            if tpl.alive:  # it answered that it cannot fork: it never will
                log.info("cannot fork workers (%s); starting each worker as a new process", e)
                self.forking = False
            raise
        try:
            async with worker:
                await worker.setup(self.config)
                yield worker
        finally:
            self._replacing = True

    async def _settle(self, tpl: Template) -> Template:
        """Before the first fork that replaces a worker, the template goes on warming the
        root's first derivations until what they share is forced (evix_worker/warming.py):
        a run that never replaces a worker never waits for it. Returns the template to fork
        from (a new one if this one was killed for it)."""
        tpl.settled = True
        if self.forking and self.config.warm_template and not self._warm_killed:
            await tpl.warm([])
            if not tpl.alive:
                log.info("the template passed the limit settling its first warming; no more warming this run")
                self._warm_killed = True
        return await self._get_template()

    async def warm(self, attr_path: tuple[str, ...]) -> None:
        """Has the template evaluate a heavy item (once each, MAX_WARMS per run), so that the
        forks made afterwards share it: with a memory limit, the item that made a worker pass
        it is typically one of a set built on its own bootstrap, which its siblings share."""
        if not (self.forking and self.config.warm_template) or attr_path in self._warmed:
            return
        if len(self._warmed) >= MAX_WARMS or self._warm_killed:
            return
        self._warmed.add(attr_path)
        tpl = await self._get_template()
        await tpl.warm(list(attr_path))
        if not tpl.alive:  # killed for it: its siblings would be too, each costing a new template
            log.info("the template passed the limit warming %s; no more warming this run", ".".join(attr_path))
            self._warm_killed = True

    async def aclose(self) -> None:
        if self._template is not None:
            await self._template.aclose()
        await self.processes.aclose()
