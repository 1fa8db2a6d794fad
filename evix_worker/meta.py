"""A derivation's `meta` as JSON, in the two ways evix reports it.

evix's own events (`evix eval --meta`): every part that evaluates, plus `metaError` naming
the first part that failed (Nix's message and the path inside `meta`, e.g. `maintainers.0`).
Functions are valid Nix but not JSON: they are left out silently, never an error.

nix-eval-jobs' way (`evix-eval-jobs --meta`): each top-level attribute of `meta` is forced
whole; one that holds a function, null, a path or a derivation is left out (Nix's
PackageInfo::checkMeta), and any evaluation error makes the whole job an error.
"""

from __future__ import annotations

from typing import Any

import orjson

import nixffi
from nixffi import NixError, ValueType
from protocol.events import format_value_path

_JSON_LEAVES = frozenset({ValueType.INT, ValueType.BOOL, ValueType.STRING, ValueType.FLOAT})


def _checks(v: nixffi.Value) -> bool:
    """Nix's PackageInfo::checkMeta: forces `v` all the way down (an error is raised) and says
    whether it is only ints, bools, strings, floats, lists and sets without outPath."""
    t = v.type
    if t == ValueType.LIST:
        return all(_checks(v.at(i)) for i in range(len(v)))
    if t == ValueType.ATTRS:
        return not v.has("outPath") and all(_checks(v.get(n)) for n in v.names())
    return t in _JSON_LEAVES


def lenient_meta(drv: nixffi.Value) -> tuple[bytes | None, dict[str, str] | None]:
    """(meta as JSON or None, metaError or None) for evix's events."""
    try:
        meta = drv.get("meta")
        failures: list[tuple[list[str | int], NixError]] = []
        converted = meta.to_python(failures=failures)
    except NixError as e:  # `meta` itself fails
        return None, {"path": "", "message": e.message}
    try:
        data = orjson.dumps(converted) if converted is not None else None
    except (TypeError, orjson.JSONEncodeError):
        data = None
    if not failures:
        return data, None
    path, error = failures[0]
    return data, {"path": format_value_path(tuple(path)), "message": error.message}


def strict_meta(drv: nixffi.Value) -> Any:
    """meta as nix-eval-jobs prints it (None when nothing is kept); NixError when it fails.

    As PackageInfo::queryMeta: each attribute of `meta` is checked whole and kept only if it
    passes; printValueAsJSON of what passes needs nothing more than `to_python`."""
    meta = drv.get("meta")
    if meta.type != ValueType.ATTRS:
        raise NixError(f"error: expected a set but found {meta.type.name.lower()}: "
                       "while evaluating the 'meta' attribute of a derivation")
    kept = {}
    for name in meta.names():
        value = meta.get(name)
        if _checks(value):
            kept[name] = value.to_python()
    return kept or None
