"""The daemon: listen, accept within the connection limit, route, and stop cleanly.

`serve` binds (or takes systemd's socket), calls `task_status.started(path)` once clients
can connect, and runs until SIGTERM/SIGINT or a `shutdown` request. Stopping goes in
order: stop accepting and remove the socket file (so new clients fall back to local
evaluation at once), cancel running requests (each answers "shutting down") with
`grace_seconds` for them to finish, then stop every session's workers.
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
from typing import Any

import psutil
import trio

from protocol import rpc

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

    def status(self) -> dict[str, Any]:
        children = self._process.children(recursive=True)
        workers_rss = 0
        for child in children:
            try:
                workers_rss += child.memory_info().rss
            except psutil.Error:
                pass
        s = self.settings
        return {
            "version": _version(),
            "protocolVersion": rpc.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "socket": self.listening.path,
            "socketActivated": not self.listening.owned,
            "uptimeSeconds": round(time.monotonic() - self.started_at, 3),
            "connections": len(self.connections),
            "sessions": len(self.registry.entries),
            "sessionMemoryBytes": self.registry.memory_bytes(),
            "workers": dict(self.registry.worker_stats(), processes=len(children)),
            "memory": {"daemonRss": self._process.memory_info().rss, "workersRss": workers_rss},
            "eventStreams": self.streams.to_json(),
            "limits": {
                "maxConnections": s.max_connections, "maxRequestBytes": s.max_request_bytes,
                "maxSessions": s.max_sessions, "maxSessionMemory": s.max_session_memory,
                "warmSeconds": s.warm_seconds, "maxWorkers": s.max_workers, "maxWarmWorkers": s.max_warm_workers,
                "maxClientBuffer": s.max_client_buffer, "clientTimeout": s.client_timeout,
                "idleTimeout": s.idle_timeout,
            },
        }

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


async def serve(settings: DaemonSettings, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Runs the daemon until asked to stop; `task_status.started(path)` once it listens."""
    listening = (from_systemd() if settings.socket_activation else None) or bind_unix(settings.socket_path)
    try:
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
                    await _serve_connections(daemon, listener, task_status)
                    sessions.cancel_scope.cancel()  # the pools close their workers on the way out
                outer.cancel_scope.cancel()
    finally:
        listening.sock.close()
        listening.remove()
    log.info("stopped")


async def _serve_connections(daemon: Daemon, listener: trio.SocketListener,
                             task_status: trio.TaskStatus[str]) -> None:
    """Accepts until a stop is requested, then stops accepting and lets connections end."""
    async with trio.open_nursery() as conns:
        accepting = trio.CancelScope()

        async def accept() -> None:
            with accepting:
                await daemon.accept_loop(listener, conns)

        conns.start_soon(accept)
        task_status.started(daemon.listening.path)
        await daemon.stop_requested.wait()
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
