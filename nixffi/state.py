"""An evaluator (Nix's EvalState) with its store and lookup path."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import autocall
from ._native import check, ctx, ffi, init, lib, owned, raise_error
from .store import Store
from .value import Value, ValueType


@dataclass(frozen=True)
class AutoArg:
    """One `--arg NAME EXPR` (is_string=False) or `--argstr NAME STR` (is_string=True)."""

    name: str
    value: str
    is_string: bool = False


class EvalState:
    """Evaluates Nix expressions against one store.

    Args:
        store: where derivations are written (`drvPath` instantiates them).
        lookup_path: `-I` entries ("nixpkgs=/path" or "/path"), searched before NIX_PATH.
    """

    __slots__ = ("_ptr", "store", "_builtins", "_helpers", "__weakref__")

    def __init__(self, store: Store, lookup_path: Sequence[str] = ()) -> None:
        init()
        self.store = store
        entries = list(lookup_path) + [e for e in os.environ.get("NIX_PATH", "").split(":") if e]
        keep = [ffi.new("char[]", e.encode()) for e in entries]
        c_path = ffi.new("const char *[]", keep + [ffi.NULL])
        if hasattr(lib, "nix_eval_state_builder_new"):
            builder = lib.nix_eval_state_builder_new(ctx, store._ptr)
            if builder == ffi.NULL:
                raise_error()
            try:
                check(lib.nix_eval_state_builder_load(ctx, builder))
                check(lib.nix_eval_state_builder_set_lookup_path(ctx, builder, c_path))
                ptr = lib.nix_eval_state_build(ctx, builder)
            finally:
                lib.nix_eval_state_builder_free(builder)
        else:  # pragma: no cover - Nix before 2.26
            ptr = lib.nix_state_create(ctx, c_path, store._ptr)
        if ptr == ffi.NULL:
            raise_error()
        self._ptr = owned(ptr, lib.nix_state_free)
        self._builtins: Value | None = None
        self._helpers: dict[str, Value] = {}

    # ---- evaluation ---------------------------------------------------------------------
    def eval_string(self, expr: str, base_dir: str | os.PathLike[str] | None = None) -> Value:
        """Evaluates `expr` (to weak head normal form); relative paths resolve against `base_dir` (default: cwd)."""
        value = Value.alloc(self)
        base = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
        check(lib.nix_expr_eval_from_string(ctx, self._ptr, expr.encode(), base.encode(), value._ptr))
        return value

    def eval_file(self, path: str | os.PathLike[str]) -> Value:
        """Evaluates a Nix file (or a directory's default.nix), like `nix-instantiate FILE`."""
        return self.builtin("import").call(self.path(os.path.abspath(path)))

    def helper(self, source: str) -> Value:
        """A small Nix function of ours, evaluated once per state and kept."""
        fn = self._helpers.get(source)
        if fn is None:
            fn = self._helpers[source] = self.eval_string(source, "/")
        return fn

    def builtin(self, name: str) -> Value:
        """`builtins.<name>`."""
        if self._builtins is None:
            self._builtins = self.eval_string("builtins", "/")
        return self._builtins.get(name)

    # ---- making values ------------------------------------------------------------------
    def string(self, s: str) -> Value:
        v = Value.alloc(self)
        check(lib.nix_init_string(ctx, v._ptr, s.encode("utf-8", "surrogateescape")))
        return v

    def int(self, i: int) -> Value:
        v = Value.alloc(self)
        check(lib.nix_init_int(ctx, v._ptr, i))
        return v

    def bool(self, b: bool) -> Value:
        v = Value.alloc(self)
        check(lib.nix_init_bool(ctx, v._ptr, b))
        return v

    def null(self) -> Value:
        v = Value.alloc(self)
        check(lib.nix_init_null(ctx, v._ptr))
        return v

    def path(self, p: str) -> Value:
        v = Value.alloc(self)
        check(lib.nix_init_path_string(ctx, self._ptr, v._ptr, p.encode("utf-8", "surrogateescape")))
        return v

    def attrs(self, items: Mapping[str, Value]) -> Value:
        """A new attribute set from already-made values."""
        builder = lib.nix_make_bindings_builder(ctx, self._ptr, len(items))
        if builder == ffi.NULL:
            raise_error()
        try:
            for name, val in items.items():
                check(lib.nix_bindings_builder_insert(ctx, builder, name.encode("utf-8", "surrogateescape"), val._ptr))
            v = Value.alloc(self)
            check(lib.nix_make_attrs(ctx, v._ptr, builder))
        finally:
            lib.nix_bindings_builder_free(builder)
        return v

    # ---- nix-instantiate's auto-calling ------------------------------------------------
    def auto_args(self, args: Sequence[AutoArg], base_dir: str | None = None) -> Value:
        """The attribute set of `--arg`/`--argstr` values (each --arg expression evaluated lazily by Nix)."""
        values = {}
        for a in args:
            values[a.name] = self.string(a.value) if a.is_string else self.eval_string(a.value, base_dir)
        return self.attrs(values)

    def auto_call(self, value: Value, args: Sequence[AutoArg], base_dir: str | None = None) -> Value:
        """Calls `value` as nix-instantiate does when it is a function taking an attribute set
        (see `auto_call_with`); the arguments are built for this one call."""
        t = value.type
        if t != ValueType.FUNCTION and not (t == ValueType.ATTRS and value.has("__functor")):
            return value
        return self.auto_call_with(value, self.auto_args(args, base_dir))

    def auto_call_with(self, value: Value, auto_args: Value) -> Value:
        """Nix's autoCallFunction with the set `auto_args` (from `auto_args`, made once and
        reused); the rules are in autocall.py."""
        return autocall.auto_call(self, value, auto_args)
