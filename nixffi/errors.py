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


HOW_TO_GET_NIX = ("Install Nix >= 2.26 with its C API (pkg-config nix-expr-c; on Debian 12, scripts/bootstrap-nix "
                  "in evix's source builds it), then reinstall evix (pip install .) or, in a clone, run "
                  "scripts/dev setup.")


def unavailable_message(error: ImportError) -> str:
    """Why `nixffi._nixlib` does not import, and how to get the Nix C API it needs."""
    if isinstance(error, ModuleNotFoundError) and error.name == "nixffi._nixlib":
        return f"nixffi's compiled bindings are missing: this evix was never built against the Nix C API. {HOW_TO_GET_NIX}"
    return f"nixffi cannot load the Nix C API it was built against ({error}). {HOW_TO_GET_NIX}"
