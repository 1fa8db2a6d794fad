"""The daemon's JSON-RPC 2.0 protocol: error codes, message shapes and typed params.

Every error code is one exception class, so handlers raise and clients catch by kind and
only the edges turn them into `{"code", "message"}`. Params of each method decode into one
frozen dataclass through `METHODS`; camelCase exists only in the `from_json`/`to_json`
pairs. While `eval` runs, the server sends `events` notifications carrying the request id
and a chunk of the NDJSON that `evix eval` prints (whole lines, as one string), so a
client can print it byte for byte. No trio here: the quick client imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import orjson

from .config import ConfigError, EvalConfig
from .query import Filter

PROTOCOL_VERSION = 1
EVENTS_METHOD = "events"
WATCH_DIFF_METHOD = "watchDiff"  # one change of a `watch`: its diff
NO_ID: Any = object()  # a request without "id" (a notification): never answered


# ---- errors: one class per code -----------------------------------------------------
class RpcError(Exception):
    """A JSON-RPC error. `code` is the wire code; `data` optional structured detail."""

    CODE: ClassVar[int] = -32603
    MESSAGE: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, data: Any = None, *, request_id: Any = None) -> None:
        super().__init__(message or self.MESSAGE)
        self.code = self.CODE
        self.message = message or self.MESSAGE
        self.data = data
        self.request_id = request_id  # the id to answer with, when known (else null)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    @staticmethod
    def from_json(d: Any) -> RpcError:
        """The exception for an error object; an unknown code keeps its code on a plain RpcError."""
        if not isinstance(d, dict) or not isinstance(d.get("code"), int):
            return InvalidResponseError(f"malformed error object: {d!r}"[:200])
        cls = _BY_CODE.get(d["code"], RpcError)
        err = cls(str(d.get("message") or cls.MESSAGE), d.get("data"))
        err.code = d["code"]
        return err


class ParseError(RpcError):
    CODE = -32700
    MESSAGE = "Parse error"


class InvalidRequestError(RpcError):
    CODE = -32600
    MESSAGE = "Invalid request"


class MethodNotFoundError(RpcError):
    CODE = -32601
    MESSAGE = "Method not found"


class InvalidParamsError(RpcError):
    CODE = -32602
    MESSAGE = "Invalid params"


class InternalRpcError(RpcError):
    CODE = -32603
    MESSAGE = "Internal error"


# Server errors: JSON-RPC reserves -32000..-32099 for the implementation.
class NoSessionError(RpcError):
    """No warm session for the config (or key) asked about."""

    CODE = -32001
    MESSAGE = "No warm session"


class SessionBusyError(RpcError):
    """The session is being evaluated and the operation cannot wait for it."""

    CODE = -32002
    MESSAGE = "Session busy"


class RequestTooLargeError(RpcError):
    CODE = -32003
    MESSAGE = "Request too large"


class ForbiddenError(RpcError):
    """The peer is not the daemon's user (checked with SO_PEERCRED)."""

    CODE = -32004
    MESSAGE = "Forbidden"


class TooManyConnectionsError(RpcError):
    CODE = -32005
    MESSAGE = "Too many connections"


class ShuttingDownError(RpcError):
    CODE = -32006
    MESSAGE = "Daemon shutting down"


class ProtocolVersionError(RpcError):
    CODE = -32007
    MESSAGE = "Protocol version mismatch"


class SlowClientError(RpcError):
    """The client read none of its events for the daemon's client timeout: its stream was ended."""

    CODE = -32008
    MESSAGE = "Client too slow"


class EvalFailedError(RpcError):
    """The input could not be loaded: the evaluation is fatal (Nix's message included)."""

    CODE = -32010
    MESSAGE = "Evaluation failed"


class InvalidResponseError(RpcError):
    """Client side only: the server's answer is not JSON-RPC 2.0 (never sent on the wire)."""

    CODE = -32099
    MESSAGE = "Invalid response"


_BY_CODE: dict[int, type[RpcError]] = {
    c.CODE: c
    for c in (ParseError, InvalidRequestError, MethodNotFoundError, InvalidParamsError, InternalRpcError,
              NoSessionError, SessionBusyError, RequestTooLargeError, ForbiddenError, TooManyConnectionsError,
              ShuttingDownError, ProtocolVersionError, SlowClientError, EvalFailedError)
}


# ---- typed params ---------------------------------------------------------------------
QUERY_FORMATS = ("objects", "ndjson")


def _config(value: Any) -> EvalConfig:
    if not isinstance(value, dict):
        raise InvalidParamsError("config must be an object (the fields of EvalConfig, camelCase)")
    try:
        return EvalConfig.from_json(value).validate()
    except ConfigError as e:
        if e.field is not None:  # the message starts with the field's path
            raise InvalidParamsError(f"config.{e}", {"field": f"config.{e.field}"}) from None
        raise InvalidParamsError(f"config: {e}") from None


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParamsError("protocolVersion must be an integer")
    if value != PROTOCOL_VERSION:
        raise ProtocolVersionError(
            f"client speaks protocol {value}, this daemon speaks {PROTOCOL_VERSION}: restart the daemon "
            "after upgrading evix",
            {"server": PROTOCOL_VERSION, "client": value},
        )
    return value


@dataclass(frozen=True)
class EvalParams:
    config: EvalConfig
    protocol_version: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        return cls(_config(_required(d, "config")), _version(d.get("protocolVersion")))

    def to_json(self) -> dict[str, Any]:
        return _with_version({"config": self.config.to_json()}, self.protocol_version)


@dataclass(frozen=True)
class QueryParams:
    config: EvalConfig
    filter: Filter = field(default_factory=Filter)
    format: str = "objects"
    protocol_version: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QueryParams:
        try:
            flt = Filter.from_json(d.get("filter"))
        except ValueError as e:  # the message names the filter field
            raise InvalidParamsError(str(e)) from None
        fmt = d.get("format", "objects")
        if fmt not in QUERY_FORMATS:
            raise InvalidParamsError(f"format must be one of {', '.join(QUERY_FORMATS)}")
        return cls(_config(_required(d, "config")), flt, fmt, _version(d.get("protocolVersion")))

    def to_json(self) -> dict[str, Any]:
        out = {"config": self.config.to_json(), "filter": self.filter.to_json(), "format": self.format}
        return _with_version(out, self.protocol_version)


@dataclass(frozen=True)
class DiffParams(EvalParams):
    """`diff` takes what `eval` takes."""


@dataclass(frozen=True)
class WatchParams:
    """`watch` takes what `eval` takes, `watch` (more absolute paths to watch) and `debounce`
    (seconds of quiet that end a burst of changes; null: the daemon's default)."""

    config: EvalConfig
    watch: tuple[str, ...] = ()
    debounce: float | None = None
    protocol_version: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WatchParams:
        paths = d.get("watch") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") and "\0" not in p
                                                  for p in paths):
            raise InvalidParamsError("watch must be an array of absolute paths", {"field": "watch"})
        debounce = d.get("debounce")
        if debounce is not None and (isinstance(debounce, bool) or not isinstance(debounce, (int, float))
                                     or not 0 < debounce <= 60):
            raise InvalidParamsError("debounce must be a number of seconds in (0, 60]", {"field": "debounce"})
        return cls(_config(_required(d, "config")), tuple(paths), debounce, _version(d.get("protocolVersion")))

    def to_json(self) -> dict[str, Any]:
        out = {"config": self.config.to_json(), "watch": list(self.watch), "debounce": self.debounce}
        return _with_version(out, self.protocol_version)


@dataclass(frozen=True)
class DropParams:
    key: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DropParams:
        key = _required(d, "key")
        if not isinstance(key, str) or not key or "\0" in key:
            raise InvalidParamsError("key must be a non-empty string without NUL characters (a session key or "
                                     "a unique prefix of one)", {"field": "key"})
        return cls(key)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key}


@dataclass(frozen=True)
class NoParams:
    """`sessions`, `status`, `shutdown`: no params (absent, {} or [])."""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NoParams:
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {}


Params = EvalParams | QueryParams | DiffParams | WatchParams | DropParams | NoParams

METHODS: dict[str, type[Params]] = {  # type: ignore[assignment]
    "eval": EvalParams,
    "query": QueryParams,
    "diff": DiffParams,
    "watch": WatchParams,
    "sessions": NoParams,
    "drop": DropParams,
    "status": NoParams,
    "shutdown": NoParams,
}

_WIRE_NAMES: dict[type, tuple[str, ...]] = {
    EvalParams: ("config", "protocolVersion"),
    QueryParams: ("config", "filter", "format", "protocolVersion"),
    DiffParams: ("config", "protocolVersion"),
    WatchParams: ("config", "watch", "debounce", "protocolVersion"),
    DropParams: ("key",),
    NoParams: (),
}


def decode_params(method: str, raw: Any) -> Params:
    """The typed params of a call: MethodNotFoundError or InvalidParamsError when they don't fit."""
    cls = METHODS.get(method)
    if cls is None:
        raise MethodNotFoundError(f"method not found: {method}", {"methods": sorted(METHODS)})
    names = _WIRE_NAMES[cls]
    if raw is None:
        raw = {}
    elif isinstance(raw, list):  # by position, in the documented order
        if len(raw) > len(names):
            raise InvalidParamsError(f"{method} takes at most {len(names)} positional params")
        raw = dict(zip(names, raw))
    if not isinstance(raw, dict):
        raise InvalidParamsError("params must be an object or an array")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        takes = f"it takes {', '.join(names)}" if names else "it takes none"
        raise InvalidParamsError(f"unknown param(s) for {method}: {', '.join(unknown)} ({takes})")
    return cls.from_json(raw)


def _required(d: dict[str, Any], name: str) -> Any:
    if d.get(name) is None:
        raise InvalidParamsError(f"missing param: {name}")
    return d[name]


def _with_version(d: dict[str, Any], version: int | None) -> dict[str, Any]:
    if version is not None:
        d["protocolVersion"] = version
    return d


# ---- messages -------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One decoded request object (`id` is NO_ID for a notification)."""

    method: str
    params: Any
    id: Any = NO_ID

    @property
    def is_notification(self) -> bool:
        return self.id is NO_ID


def parse_call(obj: Any) -> Call:
    """Checks one request object's shape; InvalidRequestError (carrying a usable id) if wrong."""
    if not isinstance(obj, dict):
        raise InvalidRequestError("a request must be a JSON object")
    rid = obj.get("id", NO_ID)
    if rid is not NO_ID and not _valid_id(rid):
        raise InvalidRequestError("id must be a string, a number or null")
    error_id = None if rid is NO_ID else rid
    if obj.get("jsonrpc") != "2.0":
        raise InvalidRequestError('"jsonrpc" must be "2.0"', request_id=error_id)
    method = obj.get("method")
    if not isinstance(method, str):
        raise InvalidRequestError('"method" must be a string', request_id=error_id)
    params = obj.get("params")
    if "params" in obj and not isinstance(params, (dict, list)):
        raise InvalidRequestError('"params" must be an object or an array', request_id=error_id)
    extra = sorted(set(obj) - {"jsonrpc", "method", "params", "id"})
    if extra:
        raise InvalidRequestError(f"unknown member(s): {', '.join(extra)}", request_id=error_id)
    return Call(method, params, rid)


def _valid_id(rid: Any) -> bool:
    return rid is None or isinstance(rid, str) or (isinstance(rid, (int, float)) and not isinstance(rid, bool))


class RawResult:
    """A result that is already JSON bytes (query answers are built from stored lines)."""

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json


def success(rid: Any, result: Any) -> bytes:
    """A response message (without newline)."""
    body = result.json if isinstance(result, RawResult) else orjson.dumps(result)
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(rid) + b',"result":' + body + b"}"


def failure(rid: Any, error: RpcError) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": error.to_json()})


def request(method: str, params: dict[str, Any] | None, rid: Any = NO_ID) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    if rid is not NO_ID:
        msg["id"] = rid
    return orjson.dumps(msg)


def events_notification(rid: Any, ndjson: bytes) -> bytes:
    """The `events` notification for a chunk of whole NDJSON lines of request `rid`."""
    text = ndjson.decode("utf-8", "replace")
    return orjson.dumps({"jsonrpc": "2.0", "method": EVENTS_METHOD, "params": {"id": rid, "ndjson": text}})


def watch_diff_notification(rid: Any, diff: dict[str, Any], summary: dict[str, Any] | None, session: str) -> bytes:
    """The `watchDiff` notification of request `rid`: one change's diff (`summary` null when
    the input could not load) and the session key."""
    return orjson.dumps({"jsonrpc": "2.0", "method": WATCH_DIFF_METHOD,
                         "params": {"id": rid, "diff": diff, "summary": summary, "session": session}})
