"""The daemon: listen, accept within the connection limit, route, and stop cleanly.

`serve` binds (or takes systemd's socket), calls `task_status.started(path)` once clients
can connect, and runs until SIGTERM/SIGINT or a `shutdown` request. Stopping goes in
order: stop accepting and remove the socket file (so new clients fall back to local
evaluation at once), cancel running requests (each answers "shutting down") with
`grace_seconds` for them to finish, then stop every session's workers. `ServeHooks` hear
each step (bound, ready, stopping, stopped): the pid file and sd_notify live there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from importlib import metadata

import psutil
import trio

from protocol import rpc, rpc_results

from . import heap
from .backpressure import EventStreams
from .connection import Connection, refuse
from .handlers import Handlers
from .router import Router
from .sessions import SessionRegistry
from .settings import DaemonSettings
from .listening_socket import ListeningSocket, bind_unix, from_systemd

log = logging.getLogger("evix.daemon")

ACCEPT_RETRY = 0.1  # seconds to wait when out of file descriptors
CONNECTION_WAIT = 5.0  # seconds a connection over the limit waits for a slot before it is refused
GIVE_BACK_AFTER = 8 << 20  # bytes sent on a connection after which its end gives memory back


class ServeHooks:
    """What `serve` tells its runner at each step of the daemon's life (no-ops by default;
    evixd.daemon.lifecycle writes the pid file and notifies systemd and a detached start)."""

    def listening(self, path: str) -> None:
        """The socket is bound; raising an EvixError refuses the start (the socket is removed)."""

    def ready(self, path: str) -> None:
        """Clients can connect."""

    def stopping(self) -> None:
        """A stop was requested: the socket is about to go."""

    def stopped(self) -> None:
        """Everything is closed; the process is about to exit."""


class Daemon:
    """The running server's state: connections, sessions, and how to stop."""

    def __init__(self, settings: DaemonSettings, listening: ListeningSocket, registry: SessionRegistry) -> None:
        self.settings = settings
        self.listening = listening
        self.registry = registry
        self.streams = EventStreams()
        self.router = Router(Handlers(registry, settings, self, self.streams))
        self.connections: set[Connection] = set()
        self.limiter = trio.CapacityLimiter(settings.max_connections)
        self._queued = 0  # connections waiting for a slot (at most max_connections)
        self.started_at = time.monotonic()
        self.stop_requested = trio.Event()
        self._process = psutil.Process()

    # ---- DaemonControl ----------------------------------------------------------------
    def request_shutdown(self) -> None:
        if not self.stop_requested.is_set():
            log.info("shutting down")
        self.stop_requested.set()

    def status(self) -> rpc_results.Status:
        children = self._process.children(recursive=True)
        workers_rss = 0
        for child in children:
            try:
                workers_rss += child.memory_info().rss
            except psutil.Error:
                pass
        s = self.settings
        warm, spawned = self.registry.worker_stats()
        return rpc_results.Status(
            version=_version(), pid=os.getpid(), socket=self.listening.path,
            socket_activated=not self.listening.owned, uptime_seconds=time.monotonic() - self.started_at,
            connections=len(self.connections), sessions=len(self.registry.entries),
            session_memory_bytes=self.registry.memory_bytes(), warm_workers=warm, spawned_workers=spawned,
            worker_processes=len(children), daemon_rss=self._process.memory_info().rss, workers_rss=workers_rss,
            event_streams=self.streams.to_json(),
            limits=rpc_results.Limits(
                max_connections=s.max_connections, max_request_bytes=s.max_request_bytes,
                max_sessions=s.max_sessions, max_session_memory=s.max_session_memory,
                warm_seconds=s.warm_seconds, max_workers=s.max_workers, max_warm_workers=s.max_warm_workers,
                max_client_buffer=s.max_client_buffer, client_timeout=s.client_timeout, idle_timeout=s.idle_timeout,
            ),
        )

    # ---- serving ----------------------------------------------------------------------
    async def accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                    log.error("cannot accept a connection (%s); retrying", e.strerror)
                    await trio.sleep(ACCEPT_RETRY)
                    continue
                raise
            try:
                self.limiter.acquire_on_behalf_of_nowait(stream)
            except trio.WouldBlock:
                if self._queued < self.settings.max_connections:
                    self._queued += 1  # here, not in the task: a burst is counted before the tasks run
                    log.debug("%d connections open: a new one waits for a slot (%d waiting)",
                              self.settings.max_connections, self._queued)
                    nursery.start_soon(self._wait_for_a_slot, stream)
                else:
                    nursery.start_soon(self._refuse_over_limit, stream)
                continue
            nursery.start_soon(self._serve_connection, stream)

    async def _wait_for_a_slot(self, stream: trio.SocketStream) -> None:
        """At the limit, a connection waits in line (first come, first served) for
        CONNECTION_WAIT seconds before it is refused: a burst of clients is served in turn
        instead of refused at random."""
        try:
            with trio.move_on_after(CONNECTION_WAIT) as waited:
                await self.limiter.acquire_on_behalf_of(stream)
        finally:
            self._queued -= 1
        if waited.cancelled_caught:
            await self._refuse_over_limit(stream)
        else:
            await self._serve_connection(stream)

    async def _refuse_over_limit(self, stream: trio.SocketStream) -> None:
        log.warning("refused a connection: %d connections already open", self.settings.max_connections)
        await refuse(stream, rpc.TooManyConnectionsError(
            f"too many connections (limit {self.settings.max_connections}); try again later"))

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        if self.stop_requested.is_set():  # it waited for a slot while the daemon began to stop
            self.limiter.release_on_behalf_of(stream)
            await refuse(stream, rpc.ShuttingDownError("the daemon is shutting down"))
            return
        conn = Connection(stream, self.router, self.settings)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.limiter.release_on_behalf_of(stream)
            if conn.abandoned or conn.bytes_sent > GIVE_BACK_AFTER:
                heap.give_back()

    async def watch_signals(self, signals: AsyncIterator[int], force: trio.CancelScope) -> None:
        """First SIGTERM/SIGINT: graceful stop; a second one: stop now."""
        async for signum in signals:
            if self.stop_requested.is_set():
                log.warning("%s again: stopping now", signal.Signals(signum).name)
                for conn in list(self.connections):
                    conn.abort()
                force.cancel()
                return
            log.info("%s received", signal.Signals(signum).name)
            self.request_shutdown()


async def serve(settings: DaemonSettings, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
                hooks: ServeHooks | None = None) -> None:
    """Runs the daemon until asked to stop; `task_status.started(path)` once it listens."""
    hooks = hooks or ServeHooks()
    listening = (from_systemd() if settings.socket_activation else None) or bind_unix(settings.socket_path)
    try:
        hooks.listening(listening.path)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(listening.sock))
        log.info("listening on %s%s (pid %d)", listening.path,
                 " (socket from systemd)" if not listening.owned else "", os.getpid())
        # The signal receiver stays open until the very end, so that a signal during the
        # clean-up is a "stop now", never the default action (which would skip it).
        with (trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) if settings.handle_signals
              else contextlib.nullcontext()) as signals:
            async with trio.open_nursery() as outer:
                registry = SessionRegistry(settings)
                daemon = Daemon(settings, listening, registry)
                if signals is not None:
                    outer.start_soon(daemon.watch_signals, signals, outer.cancel_scope)
                async with trio.open_nursery() as sessions:
                    await sessions.start(registry.run)
                    await _serve_connections(daemon, listener, task_status, hooks)
                    sessions.cancel_scope.cancel()  # the pools close their workers on the way out
                outer.cancel_scope.cancel()
    finally:
        listening.sock.close()
        listening.remove()
        hooks.stopped()
    log.info("stopped")


async def _serve_connections(daemon: Daemon, listener: trio.SocketListener,
                             task_status: trio.TaskStatus[str], hooks: ServeHooks) -> None:
    """Accepts until a stop is requested, then stops accepting and lets connections end."""
    async with trio.open_nursery() as conns:
        accepting = trio.CancelScope()

        async def accept() -> None:
            with accepting:
                await daemon.accept_loop(listener, conns)

        conns.start_soon(accept)
        task_status.started(daemon.listening.path)
        hooks.ready(daemon.listening.path)
        await daemon.stop_requested.wait()
        hooks.stopping()
        accepting.cancel()
        await listener.aclose()
        daemon.listening.remove()  # new clients see no daemon at once (and evaluate locally)
        for conn in list(daemon.connections):
            conn.stop(daemon.settings.grace_seconds)
        conns.cancel_scope.deadline = trio.current_time() + daemon.settings.grace_seconds


def _version() -> str:
    try:
        return metadata.version("evix")
    except metadata.PackageNotFoundError:
        return "unknown"
