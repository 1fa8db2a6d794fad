"""The daemon: a Unix socket speaking JSON-RPC 2.0, connections, handlers and the registry
of warm sessions, all on top of `evixd.engine`."""

from .server import serve as serve
from .settings import DaemonSettings as DaemonSettings
