"""What a master and a remote worker service agree on before any work: endpoints, the shared
token (compared in constant time), and which parts of a master's config a service accepts.

A service evaluates whatever Nix a master sends, with the rights of the service's user: the
token is the boundary. What stays out even for a master holding the token is what would
reach beyond evaluation on the remote machine: Nix settings outside `ALLOWED_NIX_OPTIONS`
(plugin-files and allow-unsafe-native-code-during-evaluation run native code, builders
sends work elsewhere...), a worker command, another store, GC roots in its directories.
"""

from __future__ import annotations

import hmac
from dataclasses import replace

from .config import ConfigError, EvalConfig

ALLOWED_NIX_OPTIONS = frozenset({
    "accept-flake-config", "allow-import-from-derivation", "allowed-uris", "experimental-features",
    "extra-experimental-features", "restrict-eval", "pure-eval", "max-call-depth", "eval-cache",
    "warn-dirty", "show-trace",
})
"""Nix settings a master may set on a remote worker (everything else is refused by name)."""


def token_matches(expected: str | None, given: str) -> bool:
    """In constant time (no timing leak of how much of the token was right); a service run
    without a token (its insecure flag) accepts any."""
    if expected is None:
        return True
    return hmac.compare_digest(expected.encode(), given.encode())


def config_for_remote(config: EvalConfig) -> EvalConfig:
    """The config a master sends: what to evaluate and the limits, without what belongs to the
    master alone (its remotes and token, its worker command, store, GC roots, worker count)."""
    return replace(config, remotes=(), remote_token=None, remote_tls_ca=None, remote_tls_fingerprint=None,
                   worker_command=None, eval_store=None, gc_roots_dir=None, workers=1, check_cache_status=False)


def accept_master_config(config: EvalConfig, max_memory_mb: int) -> EvalConfig:
    """The config a service evaluates for a master: refused (ConfigError, the reason) when it
    asks for a Nix setting outside the allow-list or anything of the remote machine's own;
    its memory limit is at most the service's."""
    for key, _ in config.options:
        name = key.removeprefix("extra-") if key.startswith("extra-") and key != "extra-experimental-features" else key
        if name not in ALLOWED_NIX_OPTIONS:
            raise ConfigError(f"Nix option '{key}' is not accepted from a master (allowed: "
                              f"{', '.join(sorted(ALLOWED_NIX_OPTIONS))})")
    for name, value in (("worker command", config.worker_command), ("eval store", config.eval_store),
                        ("GC roots directory", config.gc_roots_dir), ("remote workers", config.remotes or None)):
        if value is not None:
            raise ConfigError(f"a master may not set the {name} of a remote worker")
    return replace(config, max_memory_mb=min(config.max_memory_mb, max_memory_mb), workers=1)
