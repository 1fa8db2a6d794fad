"""What `evix watch` watches for a config, and how a flake's local inputs are kept fresh.

- `--file PATH`: the directory tree PATH lives in (imports from elsewhere: `--watch`).
- `--flake LOCALREF`: the flake's root directory, and every input of type `path` of the lock
  file the evaluation follows (`--reference-lock-file`, watched itself too, else the root's
  flake.lock; relative inputs, `path:./sub`, resolved against the node they belong to), plus
  `--watch` paths.
- `--expr` and remote flakes have nothing on disk to watch: WatchError.

A path input with a `narHash` in flake.lock is fetched by that hash, so an edit inside it
would go unseen (or fail) until the user re-locks. `fresh_overrides` overrides each such input
with its own path: Nix then locks it as it is on disk at every evaluation, as if re-locked,
and the user's flake.lock is never written. (A relative path input without a hash is part
of the root's tree already.)

The lock file is read once per evaluation (`watch_targets`): what to watch and what to
override come from the same read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from protocol.config import EvalConfig
from protocol.flakeref import local_flake_dir, split_flake_ref

from .errors import EvixError
from .inotify_watch import Root


class WatchError(EvixError):
    """The config cannot be watched (the message says why)."""


@dataclass(frozen=True)
class WatchTargets:
    """What one evaluation of a watch needs from disk: the roots to watch, and the
    `--override-input` pairs that re-lock its path inputs (see the module doc)."""

    roots: list[Root]
    overrides: tuple[tuple[str, str], ...] = ()


def check_watchable(config: EvalConfig) -> None:
    """WatchError when `config` has nothing on disk to watch (nothing is read)."""
    if config.expr is not None:
        raise WatchError("--expr cannot be watched: there is no file on disk to watch (use --file)")
    if config.file is not None:
        if config.file.startswith("<"):
            raise WatchError(f"--file {config.file} is found along the lookup path: give its path instead")
        return
    assert config.flake is not None
    flake_root(config.flake)


def watch_targets(config: EvalConfig, extra: tuple[str, ...] = ()) -> WatchTargets:
    """The roots to watch for `config` (absolute paths) and, for a flake, its overrides, from
    one read of the lock file it follows (check_watchable(config) has passed)."""
    roots = [_root_of(os.path.abspath(p)) for p in extra]
    if config.file is not None:
        return WatchTargets([Root(os.path.dirname(os.path.abspath(config.file))), *roots])
    assert config.flake is not None
    root = flake_root(config.flake)
    if config.reference_lock_file is not None:
        lock_file = os.path.abspath(config.reference_lock_file)
        roots.append(Root(os.path.dirname(lock_file), os.path.basename(lock_file)))
    else:
        lock_file = os.path.join(root, "flake.lock")
    inputs = path_inputs(root, read_lock(lock_file))
    return WatchTargets([Root(root), *(Root(path) for _, path, _ in inputs), *roots],
                        fresh_overrides(config, inputs))


def _root_of(path: str) -> Root:
    """A `--watch` path: a directory tree, or a file (its directory watched for it alone)."""
    if os.path.isdir(path) or not os.path.exists(path):
        return Root(path)
    return Root(os.path.dirname(path), os.path.basename(path))


def flake_root(flake: str) -> str:
    """The local directory of `flake` (absolute reference); WatchError for a remote one."""
    ref, _ = split_flake_ref(flake)
    directory = local_flake_dir(ref)
    if directory is None:
        raise WatchError(f"--flake {flake} is not a local flake: there is nothing on disk to watch "
                         "(watch a checkout of it, e.g. --flake path:/src/project)")
    sub = dict(part.split("=", 1) for part in ref.partition("?")[2].split("&") if "=" in part).get("dir")
    return os.path.join(str(directory), sub) if sub else str(directory)


def read_lock(lock_file: str) -> dict[str, Any]:
    """The parsed lock file; empty when it is missing or unreadable (the evaluation says why)."""
    try:
        with open(lock_file, "rb") as f:
            lock = json.load(f)
    except (OSError, ValueError):
        return {}
    return lock if isinstance(lock, dict) else {}


def path_inputs(root: str, lock: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(input path as --override-input names it, directory, locked by hash) of every `path`
    input in `lock` (the lock file of the flake at `root`), inputs of inputs included."""
    nodes = lock.get("nodes", {})
    found: list[tuple[str, str, bool]] = []

    def visit(node_name: str, input_path: tuple[str, ...], directory: str, depth: int) -> None:
        node = nodes.get(node_name, {})
        for name, target in node.get("inputs", {}).items():
            if not isinstance(target, str) or depth > 8:  # a `follows` list: watched where it is defined
                continue
            locked = nodes.get(target, {}).get("locked", {})
            if locked.get("type") != "path" or not isinstance(locked.get("path"), str):
                continue
            child = os.path.normpath(os.path.join(directory, locked["path"]))
            found.append(("/".join((*input_path, name)), child, "narHash" in locked))
            visit(target, (*input_path, name), child, depth + 1)

    visit(lock.get("root", "root"), (), root, 0)
    return found


def fresh_overrides(config: EvalConfig, inputs: list[tuple[str, str, bool]]) -> tuple[tuple[str, str], ...]:
    """`--override-input` pairs that override each hash-locked path input (of `path_inputs`)
    by its path (see the module doc); the user's own override of an input (or of its
    parent) wins."""
    mine = {name for name, _ in config.override_inputs}
    return tuple((name, f"path:{path}") for name, path, hashed in inputs
                 if hashed and name not in mine and not any(name.startswith(m + "/") for m in mine))
