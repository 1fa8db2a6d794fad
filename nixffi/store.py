"""A Nix store opened through the C API."""

from __future__ import annotations

from ._native import ctx, ffi, init, lib, owned, raise_error, read_string


class Store:
    """An open store. `uri` as Nix takes it: "" or "auto" (the default), "local?root=/dir", "daemon"..."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self, uri: str = "", params: dict[str, str] | None = None) -> None:
        init()
        c_params = ffi.NULL
        keep = []
        if params:
            pairs = []
            for k, v in params.items():
                pair = ffi.new("const char *[2]", [_cstr(k, keep), _cstr(v, keep)])
                keep.append(pair)
                pairs.append(pair)
            c_params = ffi.new("const char **[]", pairs + [ffi.NULL])
        ptr = lib.nix_store_open(ctx, uri.encode() if uri else ffi.NULL, c_params)
        if ptr == ffi.NULL:
            raise_error()
        self._ptr = owned(ptr, lib.nix_store_free)

    @property
    def uri(self) -> str:
        return read_string(lib.nix_store_get_uri, self._ptr)

    @property
    def store_dir(self) -> str:
        return read_string(lib.nix_store_get_storedir, self._ptr)

    @property
    def version(self) -> str:
        return read_string(lib.nix_store_get_version, self._ptr)

    def is_valid_path(self, path: str) -> bool:
        """True when `path` (a store path) exists in this store."""
        sp = lib.nix_store_parse_path(ctx, self._ptr, path.encode())
        if sp == ffi.NULL:
            raise_error()
        try:
            return bool(lib.nix_store_is_valid_path(ctx, self._ptr, sp))
        finally:
            lib.nix_store_path_free(sp)


def _cstr(s: str, keep: list) -> object:
    c = ffi.new("char[]", s.encode())
    keep.append(c)
    return c
