"""Loads the input of an evaluation once per worker: settings, store, eval state, root value."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nixffi
from protocol.config import EvalConfig
from protocol.events import parse_attr
from protocol.flakeref import local_flake_dir, split_flake_ref

from . import gcroots

_LOOKUP_FILE = re.compile(r"<[A-Za-z0-9._+\-]+(/[A-Za-z0-9._+\-]+)*>\Z")  # Nix's <path> syntax


class LoadError(Exception):
    """The input itself cannot be loaded: the whole evaluation fails (message says why)."""


def apply_options(config: EvalConfig) -> None:
    """`--option KEY VALUE` for this process, before any eval state exists. An unknown key is
    an error, or for nix-eval-jobs' command line a warning, as Nix's CLI makes it."""
    for key, value in config.options:
        try:
            nixffi.apply_setting(key, value)
        except nixffi.NixError as e:
            if config.nix_eval_jobs:
                print(f"warning: unknown setting '{key}'", file=sys.stderr, flush=True)
                continue
            raise LoadError(f"--option {key} {value}: {e.info or e.message}") from e


def _select(value: nixffi.Value, fragment: str, what: str) -> nixffi.Value:
    for name in parse_attr(fragment):
        if value.type != nixffi.ValueType.ATTRS:
            raise LoadError(f"{what}: cannot select '{name}' from a {value.type.name.lower()}")
        if not value.has(name):
            raise LoadError(f"{what}: attribute '{name}' missing")
        value = value.get(name)
    return value


def _prepare_process(config: EvalConfig) -> None:
    """What must hold before the eval state exists: NIX_PATH, the GC roots directory, read-only mode."""
    # The config is the whole truth: a worker of the daemon must not see the daemon's NIX_PATH.
    if config.nix_path:
        os.environ["NIX_PATH"] = config.nix_path
    else:
        os.environ.pop("NIX_PATH", None)
    if config.gc_roots_dir and not config.no_instantiate:
        try:
            gcroots.prepare(config.gc_roots_dir)
        except OSError as e:
            raise LoadError(f"--gc-roots-dir {config.gc_roots_dir}: {e.strerror or e}") from e
    if config.no_instantiate:
        try:
            nixffi.set_read_only_mode(True)
        except nixffi.NixError as e:
            raise LoadError(f"--no-instantiate: {e.message}") from e


def _redirected(config: EvalConfig, store: nixffi.Store, ref: str, overrides: dict[str, str]) -> tuple[str, dict[str, str]]:
    """`--override-flake` as Nix's flag registry: it redirects the flake reference and the
    --override-input references (inputs locked in flake.lock keep their lock, as in Nix)."""
    if not config.override_flakes:
        return ref, overrides
    registry = [(o, split_flake_ref(r)[0]) for o, r in config.override_flakes]
    resolver = nixffi.EvalState(store, lookup_path=config.lookup_path)
    return (nixffi.resolve_indirect(resolver, ref, registry),
            {name: nixffi.resolve_indirect(resolver, r, registry) for name, r in overrides.items()})


def _lock_json(config: EvalConfig, ref: str, overrides: dict[str, str]) -> str | None:
    """The flake.lock to call the flake over: the reference lock file, else the flake's own
    (None when it has none); warns, as Nix does, about an override that matches no input."""
    if config.reference_lock_file is not None:
        try:
            lock_json: str | None = Path(config.reference_lock_file).read_text()
        except OSError as e:
            raise LoadError(f"--reference-lock-file {config.reference_lock_file}: {e.strerror or e}") from e
    else:
        lock_dir = local_flake_dir(ref)
        lock = lock_dir / "flake.lock" if lock_dir else None
        lock_json = lock.read_text() if lock is not None and lock.exists() else None
    for path in nixffi.unmatched_inputs(lock_json, list(overrides)) if lock_json else ():
        print(f"warning: the flag '--override-input {path} {overrides[path]}' does not match any input",
              file=sys.stderr, flush=True)
    return lock_json


def _flake_root(config: EvalConfig, store: nixffi.Store) -> nixffi.Value:
    """The flake's value at the fragment; without a fragment its outputs, or with --select
    the whole flake (outputs, inputs, sourceInfo…), as nix-eval-jobs hands it to --select."""
    assert config.flake is not None
    nixffi.enable_flakes()
    ref, fragment = split_flake_ref(config.flake)
    ref, overrides = _redirected(config, store, ref, dict(config.override_inputs))
    lock_json = _lock_json(config, ref, dict(config.override_inputs))
    if config.pure_eval:  # pure mode takes only locked references: lock them while impure
        impure = nixffi.EvalState(store, lookup_path=config.lookup_path)
        locked = [nixffi.locked_flake_ref(impure, r) for r in (ref, *overrides.values())]
        del impure
        if None in locked:
            print(f"warning: {config.flake}: a Git tree is dirty, so it cannot be locked: evaluating in impure mode",
                  file=sys.stderr, flush=True)
        else:
            ref, overrides = locked[0], dict(zip(overrides, locked[1:]))  # type: ignore[arg-type]
            nixffi.apply_setting("pure-eval", "true")
    state = nixffi.EvalState(store, lookup_path=config.lookup_path)
    flake = nixffi.load_flake(state, ref, overrides, lock_json, use_lock_json=config.reference_lock_file is not None)
    if not fragment and config.select is not None:
        return flake
    args = [nixffi.AutoArg(a.name, a.value, a.is_string) for a in config.args]
    # auto-called with --arg, as nix-eval-jobs does for the root too
    return state.auto_call(_select(flake.get("outputs"), fragment, f"flake {config.flake}"), args,
                           config.base_dir or os.getcwd())


def _file_or_expr_root(config: EvalConfig, store: nixffi.Store) -> nixffi.Value:
    state = nixffi.EvalState(store, lookup_path=config.lookup_path)
    args = [nixffi.AutoArg(a.name, a.value, a.is_string) for a in config.args]
    base_dir = config.base_dir or os.getcwd()
    if config.file is not None:
        if config.file.startswith("<"):  # a lookup-path file, found along -I and NIX_PATH
            if not _LOOKUP_FILE.match(config.file):
                raise LoadError(f"{config.file}: not a lookup path like <nixpkgs/lib>")
            value = state.eval_string(f"import {config.file}", base_dir)
        elif not Path(config.file).exists():
            raise LoadError(f"--file {config.file}: no such file")
        else:
            value = state.eval_file(config.file)
        return state.auto_call(value, args, base_dir)
    return state.auto_call(state.eval_string(config.expr or "", base_dir), args, base_dir)


def load(config: EvalConfig) -> nixffi.Value:
    """Evaluates the root of `config` (flake output, file or expression, auto-called with
    --arg, then passed through --select)."""
    config.validate()
    _prepare_process(config)
    try:
        apply_options(config)
        store = nixffi.Store(config.eval_store or "")
        root = _flake_root(config, store) if config.flake is not None else _file_or_expr_root(config, store)
        if config.select is not None:
            select = root.state.eval_string(config.select, config.base_dir or os.getcwd())
            root = select.call(root)
            if root.type != nixffi.ValueType.ATTRS:
                raise LoadError(f"--select must evaluate to an attribute set (the traversal root), "
                                f"not a {root.type.name.lower()}")
        elif root.type != nixffi.ValueType.ATTRS:
            raise LoadError(f"{config.describe()} evaluates to a {root.type.name.lower()}, not an attribute set")
    except nixffi.NixError as e:
        raise LoadError(f"cannot load {config.describe()}:\n{e.message}") from e
    return root  # it keeps its eval state alive


def load_apply(config: EvalConfig, root: nixffi.Value) -> nixffi.Value | None:
    """The --apply function, evaluated once (LoadError if it does not parse or evaluate)."""
    if config.apply is None:
        return None
    try:
        return root.state.eval_string(config.apply, config.base_dir or os.getcwd())
    except nixffi.NixError as e:
        raise LoadError(f"--apply {config.apply!r}:\n{e.message}") from e
