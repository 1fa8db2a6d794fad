"""The event format that `evix eval` prints: one JSON object per line, camelCase keys.

    derivation: attr, attrPath, name, system, drvPath, outputs {name: path | null}
                [+ meta] [+ metaError {path, message}] [+ inputDrvs {drvPath: [outputs]}]
                [+ constituents [drvPath | name]] [+ requiredSystemFeatures] [+ extraValue]
                [+ cacheStatus, neededBuilds, neededSubstitutes]
    attrset:    attr, attrPath, attrs [child names, sorted]
    error:      attr, attrPath, error (Nix's message), fatal

`attr` joins the path with "." and quotes, as a Nix string, every element that is not a
plain Nix identifier, so that it can always be split back into `attrPath`.

Every line is written by the encoders below and read through `event_kind`. The worker's hot
path hands the encoders JSON it already has (the C helper's derivation fields and attribute
names), so an event is a few byte concatenations, never a decode and re-encode.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*\Z")
_KEYWORDS = frozenset({"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"})


def quote_attr(name: str) -> str:
    """One path element as it appears in `attr`: bare if a plain identifier, else a Nix string."""
    if _IDENT.match(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n") + '"'


def format_attr(path: list[str] | tuple[str, ...]) -> str:
    return ".".join(quote_attr(p) for p in path)


def format_value_path(path: tuple[str | int, ...]) -> str:
    """A path inside a value (`metaError.path`): names as in `attr`, list indices as bare
    numbers (`maintainers.0`; a name "0" would be `"0"`)."""
    return ".".join(str(p) if isinstance(p, int) else quote_attr(p) for p in path)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def parse_attr(attr: str) -> list[str]:
    """Splits an `attr` string (or a user's `a."b.c"` selector) back into its path."""
    out: list[str] = []
    i, n = 0, len(attr)
    if not attr:
        return out
    while True:
        if i < n and attr[i] == '"':
            i += 1
            buf = []
            while i < n and attr[i] != '"':
                if attr[i] == "\\" and i + 1 < n:
                    buf.append(_ESCAPES.get(attr[i + 1], attr[i + 1]))
                    i += 2
                else:
                    buf.append(attr[i])
                    i += 1
            if i >= n:
                raise ValueError(f"unterminated quote in attribute path {attr!r}")
            i += 1
            out.append("".join(buf))
        else:
            j = attr.find(".", i)
            j = n if j < 0 else j
            out.append(attr[i:j])
            i = j
        if i >= n:
            return out
        if attr[i] != ".":
            raise ValueError(f"expected '.' at offset {i} of attribute path {attr!r}")
        i += 1


# ---- encoding (bytes, without the newline) -------------------------------------------
def _head(attr: str, attr_path: Sequence[str]) -> bytes:
    return b'{"attr":' + orjson.dumps(attr) + b',"attrPath":' + orjson.dumps(attr_path)


def error_event(attr: str, attr_path: Sequence[str], message: str, fatal: bool = False) -> bytes:
    """An attribute that failed: Nix's message, or why its worker died."""
    tail = b',"fatal":true}' if fatal else b',"fatal":false}'
    return _head(attr, attr_path) + b',"error":' + orjson.dumps(message) + tail


def attrset_event(attr: str, attr_path: Sequence[str], attrs_json: bytes) -> bytes:
    """An attribute set that is traversed; `attrs_json`: its child names as a JSON array."""
    return _head(attr, attr_path) + b',"attrs":' + attrs_json + b"}"


def derivation_event(
    attr: str,
    attr_path: Sequence[str],
    fields_json: bytes,
    meta_json: bytes | None = None,
    input_drvs_json: bytes | None = None,
    constituents_json: bytes | None = None,
    *,
    more: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """A derivation. `fields_json` holds the members `"name":…,"system":…,"drvPath":…,"outputs":{…}`
    (as nixffi's C helper writes them); each extra is the JSON of that member's value, or None;
    `more` are further (name, JSON) members, after those, in order."""
    parts = [_head(attr, attr_path), b",", fields_json]
    if meta_json is not None:
        parts += [b',"meta":', meta_json]
    if input_drvs_json is not None:
        parts += [b',"inputDrvs":', input_drvs_json]
    if constituents_json is not None:
        parts += [b',"constituents":', constituents_json]
    for name, value in more:
        parts += [b',"', name.encode(), b'":', value]
    parts.append(b"}")
    return b"".join(parts)


# ---- decoding -------------------------------------------------------------------------
@dataclass(frozen=True)
class Derivation:
    attr: str
    attr_path: tuple[str, ...]
    name: str
    system: str
    drv_path: str
    outputs: dict[str, str | None]
    meta: Any = None
    input_drvs: dict[str, list[str]] | None = None
    constituents: list[str] | None = None
    meta_error: dict[str, str] | None = None
    required_system_features: list[str] | None = None
    extra_value: Any = None
    cache_status: str | None = None
    needed_builds: list[str] | None = None
    needed_substitutes: list[str] | None = None


@dataclass(frozen=True)
class Attrset:
    attr: str
    attr_path: tuple[str, ...]
    attrs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Error:
    attr: str
    attr_path: tuple[str, ...]
    error: str
    fatal: bool = False


Event = Derivation | Attrset | Error


class EventKind(enum.Enum):
    DERIVATION = "derivation"
    ATTRSET = "attrset"
    ERROR = "error"


def event_kind(d: dict[str, Any]) -> EventKind:
    """The kind of one decoded event line (the one place that knows which member tells it)."""
    if "drvPath" in d:
        return EventKind.DERIVATION
    if "error" in d:
        return EventKind.ERROR
    if "attrs" in d:
        return EventKind.ATTRSET
    raise ValueError(f"not an evix event: {sorted(d)}")


def event_from_json(d: dict[str, Any]) -> Event:
    """The typed event of one decoded JSON line."""
    kind = event_kind(d)
    path = tuple(d.get("attrPath", ()))
    if kind is EventKind.DERIVATION:
        return Derivation(
            d["attr"], path, d["name"], d["system"], d["drvPath"], d["outputs"],
            d.get("meta"), d.get("inputDrvs"), d.get("constituents"), d.get("metaError"),
            d.get("requiredSystemFeatures"), d.get("extraValue"), d.get("cacheStatus"), d.get("neededBuilds"),
            d.get("neededSubstitutes"),
        )
    if kind is EventKind.ERROR:
        return Error(d["attr"], path, d["error"], bool(d.get("fatal", False)))
    return Attrset(d["attr"], path, list(d["attrs"]))
