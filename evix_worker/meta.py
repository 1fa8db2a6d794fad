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
from nixffi import NixError
from protocol.events import format_value_path

# nix-eval-jobs' rule (PackageInfo::queryMeta + checkMeta, then printValueAsJSON): an
# attribute is kept when it is, all the way down, ints, bools, strings, floats, lists and
# sets without outPath; checking forces it, so an error inside it is the job's error.
_STRICT_META = """
meta:
let
  check = v:
    if builtins.isList v then builtins.all check v
    else if builtins.isAttrs v then !(v ? outPath) && builtins.all (n: check v.${n}) (builtins.attrNames v)
    else builtins.isInt v || builtins.isBool v || builtins.isString v || builtins.isFloat v;
  kept = builtins.filter (n: check meta.${n}) (builtins.attrNames meta);
in builtins.toJSON (builtins.listToAttrs (map (n: { name = n; value = meta.${n}; }) kept))
"""


def lenient_meta(drv: nixffi.Value) -> tuple[bytes | None, dict[str, str] | None]:
    """(meta as JSON or None, metaError or None) for evix's events."""
    try:
        meta = drv.get("meta")
        failures: list[tuple[tuple[str | int, ...], NixError]] = []
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
    return data, {"path": format_value_path(path), "message": error.message}


def strict_meta(drv: nixffi.Value) -> Any:
    """meta as nix-eval-jobs prints it (None when nothing is kept); NixError when it fails."""
    meta = drv.get("meta")
    kept = orjson.loads(drv.state.helper(_STRICT_META).call(meta).as_str())
    return kept or None
