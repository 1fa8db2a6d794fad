"""The one exception type of nixffi: a Nix error with Nix's own words."""

from __future__ import annotations


class NixError(Exception):
    """An error reported by Nix through the C API.

    Attributes:
        message: Nix's full message, as `nix-instantiate` would print it (trace included).
        info: the bare message without position or trace ("" when Nix gave none).
        error_type: Nix's C++ error type, e.g. ``nix::ThrownError`` or ``nix::AssertionError``.
        code: the C API's `nix_err` code (-1 unknown, -2 overflow, -3 key, -4 Nix error).
    """

    def __init__(self, message: str, *, info: str = "", error_type: str = "", code: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.info = info
        self.error_type = error_type
        self.code = code


    @property
    def out_of_memory(self) -> bool:
        """True when Nix could not allocate (the heap cap of `limit_gc_heap` was reached)."""
        return "bad_alloc" in self.message or "bad_alloc" in self.error_type


class NixUnavailableError(ImportError):
    """The compiled bindings are missing: the Nix C API was not found when nixffi was built."""
