"""Nix settings (what nix.conf and `--option` set) for this process."""

from __future__ import annotations

import os

from ._native import check, ctx, has_function, init, lib, read_string
from .errors import NixError

# Settings that 2.26's nix_setting_set cannot reach (evaluator, fetcher and flake settings
# live outside the global config there); they are read from NIX_CONFIG when an eval state
# is built. Names as in Nix 2.26's eval-settings.hh, fetch-settings.hh, flake/settings.hh.
EVAL_STATE_SETTINGS = frozenset("""
allow-unsafe-native-code-during-evaluation nix-path eval-system restrict-eval pure-eval
allow-import-from-derivation allowed-uris trace-function-calls eval-cache ignore-try
trace-verbose max-call-depth debugger-on-trace debugger-on-warn abort-on-warn
access-tokens allow-dirty warn-dirty trust-tarballs-from-git-forges flake-registry
accept-flake-config commit-lock-file-summary commit-lockfile-summary use-registries
""".split())

_flakes_ready = False
_flake_settings = None


def get_setting(key: str) -> str:
    """The current value of a Nix setting; raises NixError for an unknown key."""
    init()
    return read_string(lib.nix_setting_get, key.encode())


def set_setting(key: str, value: str) -> None:
    """Sets a Nix setting; raises NixError for an unknown key. Affects eval states made after."""
    init()
    check(lib.nix_setting_set(ctx, key.encode(), value.encode()))


def apply_setting(key: str, value: str) -> None:
    """Like `--option KEY VALUE`: the global setting, or for evaluator settings that the C API
    cannot set, NIX_CONFIG (read by eval states created afterwards). Raises NixError for an
    unknown key."""
    try:
        set_setting(key, value)
    except NixError as e:
        base = key.removeprefix("extra-")
        if e.code != lib.NIX_ERR_KEY or base not in EVAL_STATE_SETTINGS:
            raise NixError(f"unknown Nix setting '{key}'", info=f"unknown Nix setting '{key}'",
                           error_type=e.error_type, code=e.code) from e
        line = f"{key} = {value}"
        current = os.environ.get("NIX_CONFIG", "")
        os.environ["NIX_CONFIG"] = f"{current}\n{line}" if current else line


def enable_experimental_features(*features: str) -> None:
    """Adds features to `experimental-features`, keeping those already enabled."""
    current = get_setting("experimental-features").split()
    wanted = current + [f for f in features if f not in current]
    if wanted != current:
        set_setting("experimental-features", " ".join(wanted))


def enable_flakes() -> None:
    """Makes `builtins.getFlake` available to eval states created afterwards (once per process)."""
    global _flakes_ready, _flake_settings
    if _flakes_ready:
        return
    enable_experimental_features("nix-command", "flakes")

    _flake_settings = lib.nix_flake_settings_new(ctx)  # lives as long as the process
    check(lib.nix_flake_init_global(ctx, _flake_settings))
    _flakes_ready = True


def limit_gc_heap(max_bytes: int) -> None:
    """Caps Nix's garbage-collected heap: past it an allocation fails with Nix's
    `std::bad_alloc` error instead of the process growing without bound."""
    init()
    lib.evix_gc_set_max_heap_size(max_bytes)


def gc_heap_size() -> int:
    """Bytes in Nix's garbage-collected heap now (it grows, it never shrinks by itself)."""
    init()
    return int(lib.evix_gc_heap_size())


def set_read_only_mode(on: bool = True) -> None:
    """Nix's read-only mode for this process (as `nix-instantiate --eval`): drvPaths and
    output paths are computed, but no .drv is written and no source copied to the store.
    Raises NixError when this build of nixffi lacks it (Nix's C++ headers were missing)."""
    init()
    if not has_function("evix_set_read_only_mode"):
        raise NixError("this build of nixffi has no read-only mode (Nix's C++ headers were not found when it was built)")
    lib.evix_set_read_only_mode(1 if on else 0)


def nix_version() -> str:
    """The version of the Nix libraries in use, e.g. '2.26.3'."""
    from ._native import ffi

    return ffi.string(lib.nix_version_get()).decode()
