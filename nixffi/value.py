"""Nix values: a thin, reference-counted wrapper over `nix_value *`.

Each Value owns one reference, released when the Python object goes away, so a long run
does not accumulate GC roots. Accessors force the value first, as Nix would.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._native import STRING_CB, _buf, alive, check, ctx, ffi, lib, raise_error

if TYPE_CHECKING:
    from .state import EvalState

# Lives as long as the process: at interpreter exit cffi runs the finalizers of one batch of
# garbage in any order, so a freed context could still be handed to a Value's release.
_release_ctx = lib.nix_c_context_create()


def _release(ptr: Any) -> None:
    # A context of its own: a release may run between a failing call and the read of its error.
    # Checks `alive` itself (not through `owned`): one Value is made per attribute, so no lambda each.
    if alive():
        lib.nix_value_decref(_release_ctx, ptr)


_LEFT_OUT = object()  # to_python(lenient=True): a part that failed or is a function


class ValueType(enum.IntEnum):
    """Nix's value types (nix_get_type)."""

    THUNK = 0
    INT = 1
    FLOAT = 2
    BOOL = 3
    STRING = 4
    PATH = 5
    NULL = 6
    ATTRS = 7
    LIST = 8
    FUNCTION = 9
    EXTERNAL = 10


class Value:
    """One Nix value in an EvalState. Forcing errors raise NixError."""

    __slots__ = ("_ptr", "state")

    def __init__(self, ptr: Any, state: EvalState) -> None:
        """Takes ownership of one reference to `ptr` (as returned by the C API's getters)."""
        self._ptr = ffi.gc(ptr, _release)
        self.state = state

    @classmethod
    def alloc(cls, state: EvalState) -> Value:
        ptr = lib.nix_alloc_value(ctx, state._ptr)
        if ptr == ffi.NULL:
            raise_error()
        return cls(ptr, state)

    def is_same(self, other: Value) -> bool:
        """True when both are one and the same Nix value, not merely equal ones: the C API
        hands out the `nix_value *` an attribute is stored in, and `inherit x` stores x's own
        value, while a thunk (`y = x.y`) is a value of its own even once it is forced."""
        return self._ptr == other._ptr

    # ---- forcing and type ---------------------------------------------------------------
    def force(self) -> Value:
        check(lib.nix_value_force(ctx, self.state._ptr, self._ptr))
        return self

    def force_deep(self) -> Value:
        """Forces the value and everything inside it (like `builtins.deepSeq`)."""
        check(lib.nix_value_force_deep(ctx, self.state._ptr, self._ptr))
        return self

    @property
    def type(self) -> ValueType:
        """The value's type, forcing it first."""
        check(lib.nix_value_force(ctx, self.state._ptr, self._ptr))
        return ValueType(lib.nix_get_type(ctx, self._ptr))

    # ---- scalars ------------------------------------------------------------------------
    def _expect(self, t: ValueType) -> None:
        actual = self.type
        if actual != t:
            from .errors import NixError

            raise NixError(f"expected a {t.name.lower()} but found a {actual.name.lower()}", error_type="nixffi.TypeError")

    def as_bool(self) -> bool:
        self._expect(ValueType.BOOL)
        return bool(lib.nix_get_bool(ctx, self._ptr))

    def as_int(self) -> int:
        self._expect(ValueType.INT)
        return int(lib.nix_get_int(ctx, self._ptr))

    def as_float(self) -> float:
        self._expect(ValueType.FLOAT)
        return float(lib.nix_get_float(ctx, self._ptr))

    def as_str(self) -> str:
        """A string's contents (its context is dropped; see `string_context`)."""
        self._expect(ValueType.STRING)
        _buf.len = 0
        check(lib.nix_get_string(ctx, self._ptr, STRING_CB, _buf))
        return ffi.unpack(_buf.data, _buf.len).decode("utf-8", "surrogateescape") if _buf.len else ""

    def as_path(self) -> str:
        self._expect(ValueType.PATH)
        raw = lib.nix_get_path_string(ctx, self._ptr)
        if raw == ffi.NULL:
            raise_error()
        return ffi.string(raw).decode("utf-8", "surrogateescape")

    def is_null(self) -> bool:
        return self.type == ValueType.NULL

    def string_context(self) -> dict[str, Any]:
        """The string's context as `builtins.getContext` gives it: {storePath: {path?, outputs?, allOutputs?}}."""
        self._expect(ValueType.STRING)
        return self.state.builtin("getContext").call(self).to_python()

    # ---- attribute sets -----------------------------------------------------------------
    def names(self) -> list[str]:
        """Attribute names, sorted bytewise (the C API's order is unspecified)."""
        self._expect(ValueType.ATTRS)
        st = self.state._ptr
        n = lib.nix_get_attrs_size(ctx, self._ptr)
        out = []
        for i in range(n):
            raw = lib.nix_get_attr_name_byidx(ctx, self._ptr, st, i)
            if raw == ffi.NULL:
                raise_error()
            out.append(ffi.string(raw))
        out.sort()
        return [b.decode("utf-8", "surrogateescape") for b in out]

    def get(self, name: str) -> Value:
        """The attribute `name`, forced (the C API forces it); NixError if missing or failing."""
        self._expect(ValueType.ATTRS)
        ptr = lib.nix_get_attr_byname(ctx, self._ptr, self.state._ptr, name.encode("utf-8", "surrogateescape"))
        if ptr == ffi.NULL:
            if lib.nix_err_code(ctx) == lib.NIX_ERR_KEY:  # the C API's message names no attribute
                lib.nix_clear_err(ctx)
                from .errors import NixError

                msg = f"error: attribute '{name}' missing"
                raise NixError(msg, info=msg.removeprefix("error: "), error_type="nix::EvalError", code=lib.NIX_ERR_KEY)
            raise_error()
        return Value(ptr, self.state)

    def has(self, name: str) -> bool:
        self._expect(ValueType.ATTRS)
        found = lib.nix_has_attr_byname(ctx, self._ptr, self.state._ptr, name.encode("utf-8", "surrogateescape"))
        if lib.nix_err_code(ctx):
            raise_error()
        return bool(found)

    def __getitem__(self, key: str | int) -> Value:
        return self.at(key) if isinstance(key, int) else self.get(key)

    def __contains__(self, name: str) -> bool:
        return self.has(name)

    # ---- lists --------------------------------------------------------------------------
    def __len__(self) -> int:
        t = self.type
        if t == ValueType.LIST:
            return lib.nix_get_list_size(ctx, self._ptr)
        if t == ValueType.ATTRS:
            return lib.nix_get_attrs_size(ctx, self._ptr)
        raise TypeError(f"a Nix {t.name.lower()} has no length")

    def at(self, index: int) -> Value:
        """The list element at `index` (unforced)."""
        self._expect(ValueType.LIST)
        n = lib.nix_get_list_size(ctx, self._ptr)
        if not 0 <= index < n:
            raise IndexError(index)
        ptr = lib.nix_get_list_byidx(ctx, self._ptr, self.state._ptr, index)
        if ptr == ffi.NULL:
            raise_error()
        return Value(ptr, self.state)

    def __iter__(self) -> Iterator[Value]:
        if self.type == ValueType.ATTRS:
            raise TypeError("iterate over a Nix attribute set with .names() or .items()")
        return (self.at(i) for i in range(len(self)))

    def items(self) -> Iterator[tuple[str, Value]]:
        for name in self.names():
            yield name, self.get(name)

    # ---- functions ----------------------------------------------------------------------
    def call(self, *args: Value) -> Value:
        """Applies this function to the arguments, one after the other (strictly)."""
        result = Value.alloc(self.state)
        st = self.state._ptr
        if len(args) == 1:
            check(lib.nix_value_call(ctx, st, self._ptr, args[0]._ptr, result._ptr))
        elif hasattr(lib, "nix_value_call_multi"):
            arr = ffi.new("nix_value *[]", [a._ptr for a in args])
            check(lib.nix_value_call_multi(ctx, st, self._ptr, len(args), arr, result._ptr))
        else:  # pragma: no cover - every Nix with a C API has call_multi so far
            f = self
            for a in args:
                f = f.call(a)
            return f
        return result

    # ---- conversion ---------------------------------------------------------------------
    def to_python(self, *, lenient: bool = False, failures: list[tuple[list[str | int], Any]] | None = None) -> Any:
        """Deep conversion to JSON-like Python data.

        Paths become strings, functions None. With `lenient`, attributes and list elements
        that fail to evaluate (or are functions) are left out instead of raising. With a
        `failures` list (implies lenient), the first part that failed is appended to it as
        `(path inside this value, NixError)`, the path made of names and list indices.
        """
        if failures is None:
            return self._convert(self.type, lenient, None)
        return self._convert(self.type, True, failures)

    def _convert(self, t: ValueType, lenient: bool, failures: list | None) -> Any:
        """`to_python` of this value, forced, of type `t` (each node forced and typed once).

        The failure's path is built on the way back up: a frame during whose child the
        (single) failure was recorded adds that child's key in front, so the conversion
        itself keeps no path."""
        if t == ValueType.ATTRS:
            out = {}
            st = self.state._ptr
            for name in self.names():
                ptr = lib.nix_get_attr_byname(ctx, self._ptr, st, name.encode("utf-8", "surrogateescape"))
                child = self._child(ptr, lenient, True, failures, name)
                if child is not _LEFT_OUT:
                    out[name] = child
            return out
        if t == ValueType.LIST:
            items = []
            st = self.state._ptr
            for i in range(lib.nix_get_list_size(ctx, self._ptr)):
                child = self._child(lib.nix_get_list_byidx(ctx, self._ptr, st, i), lenient, False, failures, i)
                if child is not _LEFT_OUT:
                    items.append(child)
            return items
        if t == ValueType.STRING:
            _buf.len = 0
            check(lib.nix_get_string(ctx, self._ptr, STRING_CB, _buf))
            return ffi.unpack(_buf.data, _buf.len).decode("utf-8", "surrogateescape") if _buf.len else ""
        if t == ValueType.INT:
            return int(lib.nix_get_int(ctx, self._ptr))
        if t == ValueType.FLOAT:
            return float(lib.nix_get_float(ctx, self._ptr))
        if t == ValueType.BOOL:
            return bool(lib.nix_get_bool(ctx, self._ptr))
        if t == ValueType.PATH:
            return self.as_path()
        return None

    def _child(self, ptr: Any, lenient: bool, forced: bool, failures: list | None, key: str | int) -> Any:
        """The converted child `ptr` (a new reference, or NULL after an error) at `key`;
        _LEFT_OUT when lenient and it failed or is a function (the first failure is recorded
        in `failures`, and each frame it passes through puts its key in front of its path)."""
        from .errors import NixError

        try:
            if ptr == ffi.NULL:
                raise_error()
            child = Value(ptr, self.state)
            if not forced:
                check(lib.nix_value_force(ctx, self.state._ptr, ptr))
            t = ValueType(lib.nix_get_type(ctx, ptr))
            if lenient and t == ValueType.FUNCTION:
                return _LEFT_OUT
            if failures is None:
                return child._convert(t, lenient, None)
            seen = len(failures)
            converted = child._convert(t, lenient, failures)
            if len(failures) != seen:
                failures[0][0].insert(0, key)
            return converted
        except NixError as e:
            if not lenient:
                raise
            if failures is not None and not failures:
                failures.append(([key], e))
            return _LEFT_OUT

    def __repr__(self) -> str:
        t = ValueType(lib.nix_get_type(ctx, self._ptr))
        return f"<nixffi.Value {t.name.lower()}>"
