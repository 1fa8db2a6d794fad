"""The daemon's settings: where it listens and the limits it keeps (from `evixd`'s options)."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.framing import DEFAULT_MAX_LINE


@dataclass(frozen=True)
class DaemonSettings:
    """Everything `serve` needs; defaults suit one user's editor, tools and CLI."""

    socket_path: str
    max_connections: int = 64
    max_request_bytes: int = DEFAULT_MAX_LINE
    max_in_flight: int = 16  # requests one connection may have running at once
    max_client_buffer: int = 4 << 20  # bytes of events one eval holds for a client that reads slowly
    client_timeout: float = 60.0  # a client that takes no byte for this long has its stream ended
    idle_timeout: float = 60.0  # a connection with no request running and no input for this long is closed
    max_sessions: int = 16
    max_session_memory: int = 2048 << 20  # bytes, all warm graphs together (estimated)
    warm_seconds: float = 300.0  # how long a session keeps idle workers after its last eval
    max_workers: int = 64  # cap on a request's --workers
    max_warm_workers: int = 8  # idle worker processes kept across all sessions
    grace_seconds: float = 5.0  # shutdown: how long running requests get to end
    worker_command: tuple[str, ...] | None = None
    socket_activation: bool = True  # accept a socket passed by systemd (LISTEN_FDS)
    handle_signals: bool = True  # SIGTERM/SIGINT stop the daemon gracefully
