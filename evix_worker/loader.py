"""Loads the input of an evaluation once per worker: settings, store, eval state, root value."""

from __future__ import annotations

import os
from pathlib import Path

import nixffi
from protocol.config import EvalConfig
from protocol.events import parse_attr
from protocol.flakeref import local_flake_dir, split_flake_ref

from . import gcroots


class LoadError(Exception):
    """The input itself cannot be loaded: the whole evaluation fails (message says why)."""


def apply_options(config: EvalConfig) -> None:
    """`--option KEY VALUE` for this process, before any eval state exists."""
    for key, value in config.options:
        try:
            nixffi.apply_setting(key, value)
        except nixffi.NixError as e:
            raise LoadError(f"--option {key} {value}: {e.info or e.message}") from e


def _select(value: nixffi.Value, fragment: str, what: str) -> nixffi.Value:
    for name in parse_attr(fragment):
        if value.type != nixffi.ValueType.ATTRS:
            raise LoadError(f"{what}: cannot select '{name}' from a {value.type.name.lower()}")
        if not value.has(name):
            raise LoadError(f"{what}: attribute '{name}' missing")
        value = value.get(name)
    return value


def load(config: EvalConfig) -> nixffi.Value:
    """Evaluates the root of `config` (flake output, file or expression), auto-called with --arg
    as nix-eval-jobs does for the root too."""
    config.validate()
    # The config is the whole truth: a worker of the daemon must not see the daemon's NIX_PATH.
    if config.nix_path:
        os.environ["NIX_PATH"] = config.nix_path
    else:
        os.environ.pop("NIX_PATH", None)
    if config.gc_roots_dir:
        try:
            gcroots.prepare(config.gc_roots_dir)
        except OSError as e:
            raise LoadError(f"--gc-roots-dir {config.gc_roots_dir}: {e.strerror or e}") from e
    try:
        if config.flake is not None:
            nixffi.enable_flakes()
        apply_options(config)
        state = nixffi.EvalState(nixffi.Store(), lookup_path=config.lookup_path)
        args = [nixffi.AutoArg(a.name, a.value, a.is_string) for a in config.args]
        base_dir = config.base_dir or os.getcwd()
        if config.flake is not None:
            ref, fragment = split_flake_ref(config.flake)
            flake_dir = local_flake_dir(ref)
            lock = flake_dir / "flake.lock" if flake_dir else None
            flake = nixffi.load_flake(
                state,
                ref,
                dict(config.override_inputs),
                lock.read_text() if lock is not None and lock.exists() else None,
            )
            root = state.auto_call(_select(flake.get("outputs"), fragment, f"flake {config.flake}"), args, base_dir)
        elif config.file is not None:
            if not Path(config.file).exists():
                raise LoadError(f"--file {config.file}: no such file")
            root = state.auto_call(state.eval_file(config.file), args, base_dir)
        else:
            root = state.auto_call(state.eval_string(config.expr or "", base_dir), args, base_dir)
        if root.type != nixffi.ValueType.ATTRS:
            raise LoadError(f"{config.describe()} evaluates to a {root.type.name.lower()}, not an attribute set")
    except nixffi.NixError as e:
        raise LoadError(f"cannot load {config.describe()}:\n{e.message}") from e
    return root  # it keeps its eval state alive
