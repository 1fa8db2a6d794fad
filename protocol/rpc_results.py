"""What the daemon's methods answer (docs/protocol.md): the JSON shape of each result.

The daemon hands these plain values; field names and camelCase live here only. Apart from
`protocol.rpc` (errors, params, messages) because together they would pass 400 lines.
No trio here: the quick client imports `protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .config import EvalConfig
from .rpc import PROTOCOL_VERSION, RawResult


class RunCounts(Protocol):
    """What one evaluation counted (`evixd.engine.Summary` is one)."""

    derivations: int
    errors: int
    seconds: float
    workers_started: int
    worker_deaths: int
    recycled: int
    batches: int


def summary_json(s: RunCounts) -> dict[str, Any]:
    """A run's summary, as `eval` answers it and `diff` and `sessions` embed it."""
    return {
        "derivations": s.derivations, "errors": s.errors, "seconds": round(s.seconds, 3),
        "workersStarted": s.workers_started, "workerDeaths": s.worker_deaths,
        "recycled": s.recycled, "batches": s.batches,
    }


def eval_result(summary: RunCounts, session: str, input_description: str) -> dict[str, Any]:
    """`eval`: the summary, the session key and the input's description."""
    return dict(summary_json(summary), session=session, input=input_description)


def query_result(session: str, count: int, server_ms: float, format: str, body: bytes) -> RawResult:
    """`query`: `body` is the matches' JSON (an array of objects, or one NDJSON string for
    the "ndjson" format), joined as stored bytes, never re-encoded."""
    head = orjson.dumps({"session": session, "count": count, "serverMs": round(server_ms, 3)})
    member = b',"ndjson":' if format == "ndjson" else b',"derivations":'
    return RawResult(head[:-1] + member + body + b"}")


@dataclass(frozen=True)
class DiffEntry:
    """A derivation that a diff lists; `old_drv_path` set for a changed one."""

    attr: str
    attr_path: tuple[str, ...]
    name: str
    system: str
    drv_path: str
    old_drv_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"attr": self.attr, "attrPath": list(self.attr_path), "name": self.name, "system": self.system,
               "drvPath": self.drv_path}
        if self.old_drv_path is not None:
            out["oldDrvPath"] = self.old_drv_path
        return out


@dataclass(frozen=True)
class DiffError:
    attr: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"attr": self.attr, "error": self.error}


@dataclass(frozen=True)
class Diff:
    """How a new evaluation differs from the warm graph; each list ordered by attr."""

    added: list[DiffEntry]
    removed: list[DiffEntry]
    changed: list[DiffEntry]
    errors: list[DiffError]

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [e.to_json() for e in self.added], "removed": [e.to_json() for e in self.removed],
            "changed": [e.to_json() for e in self.changed], "errors": [e.to_json() for e in self.errors],
        }


def diff_result(diff: Diff, summary: RunCounts, session: str) -> dict[str, Any]:
    """`diff`: the differences, the new run's summary and the session key."""
    return dict(diff.to_json(), summary=summary_json(summary), session=session)


@dataclass(frozen=True)
class SessionInfo:
    """One entry of `sessions`. derivations/errors: None until the first evaluation ends."""

    key: str
    config: EvalConfig
    derivations: int | None
    errors: int | None
    memory_bytes: int
    busy: bool
    evaluations: int
    evaluated_at: float | None
    idle_seconds: float
    warm_workers: int
    last_summary: RunCounts | None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "input": self.config.describe(),
            "config": {k: v for k, v in self.config.to_json().items() if k != "workerCommand"},
            "derivations": self.derivations,
            "errors": self.errors,
            "memoryBytes": self.memory_bytes,
            "busy": self.busy,
            "evaluations": self.evaluations,
            "evaluatedAt": self.evaluated_at,
            "idleSeconds": round(self.idle_seconds, 3),
            "warmWorkers": self.warm_workers,
            "lastSummary": summary_json(self.last_summary) if self.last_summary is not None else None,
        }


@dataclass(frozen=True)
class Limits:
    """The daemon's limits, as `status` reports them."""

    max_connections: int
    max_request_bytes: int
    max_sessions: int
    max_session_memory: int
    warm_seconds: float
    max_workers: int
    max_warm_workers: int
    max_client_buffer: int
    client_timeout: float
    idle_timeout: float

    def to_json(self) -> dict[str, Any]:
        return {
            "maxConnections": self.max_connections, "maxRequestBytes": self.max_request_bytes,
            "maxSessions": self.max_sessions, "maxSessionMemory": self.max_session_memory,
            "warmSeconds": self.warm_seconds, "maxWorkers": self.max_workers, "maxWarmWorkers": self.max_warm_workers,
            "maxClientBuffer": self.max_client_buffer, "clientTimeout": self.client_timeout,
            "idleTimeout": self.idle_timeout,
        }


@dataclass(frozen=True)
class Status:
    """`status`: the daemon's version, socket, load, memory and limits."""

    version: str
    pid: int
    socket: str
    socket_activated: bool
    uptime_seconds: float
    connections: int
    sessions: int
    session_memory_bytes: int
    warm_workers: int
    spawned_workers: int
    worker_processes: int
    daemon_rss: int
    workers_rss: int
    event_streams: dict[str, Any]
    limits: Limits

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "protocolVersion": PROTOCOL_VERSION,
            "pid": self.pid,
            "socket": self.socket,
            "socketActivated": self.socket_activated,
            "uptimeSeconds": round(self.uptime_seconds, 3),
            "connections": self.connections,
            "sessions": self.sessions,
            "sessionMemoryBytes": self.session_memory_bytes,
            "workers": {"warm": self.warm_workers, "spawned": self.spawned_workers, "processes": self.worker_processes},
            "memory": {"daemonRss": self.daemon_rss, "workersRss": self.workers_rss},
            "eventStreams": self.event_streams,
            "limits": self.limits.to_json(),
        }


def dropped_result(key: str) -> dict[str, Any]:
    """`drop`: the key of the session forgotten."""
    return {"dropped": key}


def stopping_result() -> dict[str, Any]:
    """`shutdown`: answered before the daemon stops."""
    return {"stopping": True}
