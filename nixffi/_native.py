"""The compiled bindings, one-time library init, and the single place C errors become NixError.

Nix is used from one thread per process (Boehm GC aborts on collections that see an
unregistered thread), so one error context per process is enough.
"""

from __future__ import annotations

import re
import atexit
from collections.abc import Callable
from typing import Any

from .errors import NixError, NixUnavailableError, unavailable_message

try:
    from ._nixlib import ffi, lib
except ImportError as e:  # depends on how evix was installed: the message says what to do
    raise NixUnavailableError(unavailable_message(e)) from e

__all__ = ["ffi", "lib", "ctx", "check", "raise_error", "read_string", "has_function", "init"]

_alive = True


@atexit.register
def _process_ending() -> None:
    global _alive
    _alive = False


def alive() -> bool:
    """False once the interpreter shuts down: then objects are freed in no particular order
    (a value after its eval state), so frees are skipped; the process is ending anyway."""
    return _alive


def owned(ptr: Any, free: Callable[[Any], Any]) -> Any:
    """`ptr`, freed with `free` when Python drops it (not during interpreter shutdown)."""
    return ffi.gc(ptr, lambda p: free(p) if _alive else None)


# Contexts live as long as the process.
ctx = lib.nix_c_context_create()
_scratch = lib.nix_c_context_create()  # for reading errors
_buf = ffi.new("evix_buf *")
STRING_CB = ffi.addressof(lib, "evix_buf_set")


def has_function(name: str) -> bool:
    """True when the installed Nix's headers declare the C API function `name`."""
    return hasattr(lib, name)


def _take_buf() -> str:
    return ffi.unpack(_buf.data, _buf.len).decode("utf-8", "replace") if _buf.len else ""


def read_string(fn: Any, *args: Any) -> str:
    """Calls a C API function of the form f(ctx, *args, callback, user_data) and returns the string."""
    _buf.len = 0
    check(fn(ctx, *args, STRING_CB, _buf))
    return _take_buf()


def raise_error(context: Any = None) -> None:
    """Raises NixError with the message, bare message and type name held by `context`."""
    context = ctx if context is None else context
    code = lib.nix_err_code(context)
    n = ffi.new("unsigned int *")
    raw = lib.nix_err_msg(_scratch, context, n)
    message = ffi.unpack(raw, n[0]).decode("utf-8", "replace") if raw != ffi.NULL else f"Nix error {code}"
    info = name = ""
    if code == lib.NIX_ERR_NIX_ERROR:
        _buf.len = 0
        if lib.nix_err_info_msg(_scratch, context, STRING_CB, _buf) == 0:
            info = _take_buf()
        _buf.len = 0
        if lib.nix_err_name(_scratch, context, STRING_CB, _buf) == 0:
            name = _take_buf()
    lib.nix_clear_err(context)
    raise NixError(strip_ansi(message), info=strip_ansi(info), error_type=name, code=code)


def check(rc: int) -> None:
    """Raises NixError unless a C call returned NIX_OK."""
    if rc:
        raise_error()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Nix colours its messages whether or not a terminal will show them; we pass plain text."""
    return _ANSI.sub("", text)


_initialised = False


def init() -> None:
    """Initialises libutil, libstore and libexpr once per process (idempotent)."""
    global _initialised
    if _initialised:
        return
    check(lib.nix_libutil_init(ctx))
    check(lib.nix_libstore_init(ctx))
    check(lib.nix_libexpr_init(ctx))
    _initialised = True
