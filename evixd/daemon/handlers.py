"""The daemon's methods: eval, query, diff, watch, sessions, drop, status, shutdown.

Each takes its typed params (protocol.rpc) and a CallContext, returns a JSON-able result
(or RawResult bytes) and raises protocol.rpc errors; engine errors are mapped here, at
the edge, so routing never needs to know them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from protocol import rpc, rpc_results
from protocol.config import EvalConfig

from evixd.engine.errors import InputError, SessionError
from evixd.engine.scheduler import EventSink, Summary
from evixd.engine.watch_paths import WatchError
from .backpressure import EventStream, EventStreams
from .sessions import SessionEntry, SessionRegistry
from .settings import DaemonSettings
from .watch_hubs import WatchHubs

MAX_EVENTS_CHUNK = 1 << 20  # bytes of NDJSON per `events` notification at most (when backed up)


@dataclass(frozen=True)
class CallContext:
    """What a method knows of its caller: the request id and how to send it notifications."""

    request_id: Any
    send: Callable[[bytes], Awaitable[bool]]  # one framed-less JSON message; False once the peer is gone

    @property
    def is_notification(self) -> bool:
        return self.request_id is rpc.NO_ID


class DaemonControl(Protocol):
    """The server-wide facts and actions the methods need (implemented by the server)."""

    def status(self) -> rpc_results.Status: ...

    def request_shutdown(self) -> None: ...


class Handlers:
    """Method name -> implementation, over one session registry."""

    def __init__(self, registry: SessionRegistry, settings: DaemonSettings, control: DaemonControl,
                 streams: EventStreams | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.control = control
        self.streams = streams or EventStreams()
        self.watches = WatchHubs(registry)
        self._table: dict[str, Callable[[Any, CallContext], Awaitable[Any]]] = {
            "eval": self.eval,
            "query": self.query,
            "diff": self.diff,
            "watch": self.watch,
            "sessions": self.sessions,
            "drop": self.drop,
            "status": self.status,
            "shutdown": self.shutdown,
        }
        assert set(self._table) == set(rpc.METHODS), "every protocol method needs a handler"

    async def call(self, method: str, params: rpc.Params, ctx: CallContext) -> Any:
        return await self._table[method](params, ctx)

    # ---- eval / query / diff ----------------------------------------------------------
    async def eval(self, p: rpc.EvalParams, ctx: CallContext) -> dict[str, Any]:
        """Streams the events as `events` notifications, then answers the run's summary."""
        config = self._config(p.config)
        if ctx.is_notification:  # nobody to stream to
            entry, summary = await self._evaluate(config, None)
        else:
            entry, summary = await self._stream(config, ctx)
        return rpc_results.eval_result(summary, entry.key, config.describe())

    async def _stream(self, config: EvalConfig, ctx: CallContext) -> tuple[SessionEntry, Summary]:
        """Evaluates at the pace the client reads the events (backpressure.py)."""
        stream = EventStream(self.settings.max_client_buffer, self.settings.client_timeout)
        self.streams.live.add(stream)
        error: rpc.RpcError | None = None
        try:
            async with trio.open_nursery() as nursery:  # the forwarder sends every event before we answer
                nursery.start_soon(stream.forward, ctx.send, MAX_EVENTS_CHUNK,
                                   functools.partial(rpc.events_notification, ctx.request_id))
                try:
                    with stream.run_scope:  # cancelled when the client stalls
                        result = await self._evaluate(config, stream.put)
                except rpc.RpcError as e:  # raised once the forwarder has sent what came before
                    error = e
                finally:
                    stream.close()
        finally:
            self.streams.live.discard(stream)
        if stream.stalled:
            raise rpc.SlowClientError(
                f"the client read none of its events for {stream.stall_timeout:g} s, so its stream was "
                "ended and the evaluation cancelled: read the events as they arrive (evixd --client-timeout "
                "sets how long the daemon waits)", {"clientTimeout": stream.stall_timeout})
        if error is not None:
            raise error
        return result

    async def _evaluate(self, config: EvalConfig, sink: EventSink | None) -> tuple[SessionEntry, Summary]:
        try:
            return await self.registry.evaluate(config, sink)
        except InputError as e:
            raise _eval_failed(config, e) from None

    async def query(self, p: rpc.QueryParams, ctx: CallContext) -> rpc.RawResult:
        """The matching derivations, built from the stored lines (never re-encoded)."""
        started = time.perf_counter()
        config = self._config(p.config)
        entry = self._warm_entry(config)
        index = entry.session.index
        assert index is not None
        selected = index.select(p.filter)
        body = index.ndjson_json(selected) if p.format == "ndjson" else index.objects_json(selected)
        ms = (time.perf_counter() - started) * 1000
        return rpc_results.query_result(entry.key, len(selected), ms, p.format, body)

    async def diff(self, p: rpc.DiffParams, ctx: CallContext) -> dict[str, Any]:
        """Re-evaluates (files as they are now) and compares with the warm graph, which it replaces."""
        config = self._config(p.config)
        entry = self._warm_entry(config)
        try:
            diff, summary = await self.registry.diff(entry, config)
        except InputError as e:
            raise _eval_failed(config, e) from None
        except SessionError as e:
            raise rpc.NoSessionError(f"{e}: run `evix eval` with the same input options first") from None
        return rpc_results.diff_result(diff, summary, entry.key)

    async def watch(self, p: rpc.WatchParams, ctx: CallContext) -> None:
        """Streams the first evaluation's events, then a `watchDiff` per change, until the
        client goes (watch_hubs.py); never answers otherwise."""
        if ctx.is_notification:
            raise rpc.InvalidRequestError("watch needs an id: its notifications name it")
        try:
            await self.watches.serve(self._config(p.config), p.watch, p.debounce, ctx.request_id, ctx.send)
        except WatchError as e:
            raise rpc.InvalidParamsError(str(e)) from None

    # ---- sessions ---------------------------------------------------------------------
    async def sessions(self, p: rpc.NoParams, ctx: CallContext) -> list[dict[str, Any]]:
        entries = sorted(self.registry.entries.values(), key=lambda e: -e.last_used)
        return [e.info().to_json() for e in entries]

    async def drop(self, p: rpc.DropParams, ctx: CallContext) -> dict[str, Any]:
        entry = self.registry.find(p.key)
        if entry is None:
            raise rpc.NoSessionError(f"no session with key {p.key} (or the prefix matches several)", {"key": p.key})
        try:
            self.registry.drop(entry)
        except SessionError as e:
            raise rpc.SessionBusyError(str(e), {"key": entry.key}) from None
        return rpc_results.dropped_result(entry.key)

    async def status(self, p: rpc.NoParams, ctx: CallContext) -> dict[str, Any]:
        return self.control.status().to_json()

    async def shutdown(self, p: rpc.NoParams, ctx: CallContext) -> dict[str, Any]:
        self.control.request_shutdown()
        return rpc_results.stopping_result()

    # ---- helpers ----------------------------------------------------------------------
    def _config(self, config: EvalConfig) -> EvalConfig:
        """The config as the daemon runs it: checked, resolved against its baseDir, capped."""
        if not config.base_dir or not os.path.isabs(config.base_dir):
            raise rpc.InvalidParamsError(
                "config.baseDir must be an absolute directory: relative paths (and the session key) "
                "are resolved against it"
            )
        config = config.resolved(config.base_dir)  # rpc decoding validated it
        return dataclasses.replace(
            config, workers=min(config.workers, self.settings.max_workers), worker_command=None
        )

    def _warm_entry(self, config: EvalConfig) -> SessionEntry:
        key = config.session_key()
        entry = self.registry.get(key)
        if entry is None:
            raise rpc.NoSessionError(
                f"no warm session for {config.describe()}: run `evix eval` with the same input options first",
                {"key": key},
            )
        if entry.session.index is None:
            raise rpc.NoSessionError(
                f"the session for {config.describe()} is still being evaluated for the first time", {"key": key}
            )
        return entry


def _eval_failed(config: EvalConfig, error: InputError) -> rpc.EvalFailedError:
    return rpc.EvalFailedError(str(error), {"input": config.describe()})
