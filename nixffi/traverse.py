"""What an evaluation walker asks of each attribute, in one C call each (see _traverse.c).

`classify_child` looks a child up, forces it and says whether it is a derivation, an
attribute set to traverse (`recurseForDerivations = true`, or any set when forced), another
attribute set, a function to auto-call (a lambda, a primop or a `__functor` set), or
something to skip. `derivation_json` renders a derivation's name, system,
drvPath and outputs as JSON members, `attr_names_json` a set's sorted names. Each replaces
~10 Python-level C calls per attribute.
"""

from __future__ import annotations

import enum

from ._native import ctx, ffi, lib, raise_error
from .value import Value

_out = ffi.new("nix_value **")
_json = ffi.new("evix_buf *")


class Kind(enum.IntEnum):
    SKIP = 0
    DERIVATION = 1
    TRAVERSE = 2
    ATTRS = 3
    FUNCTION = 4


_KINDS = (Kind.SKIP, Kind.DERIVATION, Kind.TRAVERSE, Kind.ATTRS, Kind.FUNCTION)


def classify_child(parent: Value, name: bytes, force_recurse: bool) -> tuple[Kind, Value | None]:
    """The kind of `parent.<name>`, and the child itself for DERIVATION, TRAVERSE and FUNCTION.

    Raises NixError when looking it up or forcing it fails.
    """
    kind = lib.evix_classify_child(ctx, parent.state._ptr, parent._ptr, name, force_recurse, _out)
    if kind < 0:
        raise_error()
    child = Value(_out[0], parent.state) if _out[0] != ffi.NULL else None
    return _KINDS[kind], child


def classify(value: Value, force_recurse: bool) -> Kind:
    kind = lib.evix_classify(ctx, value.state._ptr, value._ptr, force_recurse)
    if kind < 0:
        raise_error()
    return _KINDS[kind]


HAS_META = 1
HAS_AGGREGATE = 2
HAS_FEATURES = 4  # requiredSystemFeatures, __contentAddressed or __impure: the .drv may require features


def derivation_json(drv: Value) -> tuple[bytes, int]:
    """`"name":…,"system":…,"drvPath":…,"outputs":{…}` (drvPath forced first), and flags
    (HAS_META, HAS_AGGREGATE, HAS_FEATURES) saying which optional attributes exist; NixError on failure."""
    flags = lib.evix_derivation_json(ctx, drv.state._ptr, drv._ptr, _json)
    if flags < 0:
        raise_error()
    return ffi.unpack(_json.data, _json.len), flags


def attr_names_json(attrs: Value) -> bytes:
    """The names of an attribute set as a JSON array, sorted bytewise."""
    if lib.evix_attr_names_json(ctx, attrs.state._ptr, attrs._ptr, _json) != 0:
        raise_error()
    return ffi.unpack(_json.data, _json.len)
