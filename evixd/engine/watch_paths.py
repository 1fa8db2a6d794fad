"""What `evix watch` watches for a config, and how a flake's local inputs are kept fresh.

- `--file PATH`: the directory tree PATH lives in (imports from elsewhere: `--watch`).
- `--flake LOCALREF`: the flake's root directory, and every input of its flake.lock of type
  `path` (relative ones, `path:./sub`, resolved against the node they belong to), plus
  `--watch` paths.
- `--expr` and remote flakes have nothing on disk to watch: WatchError.

A path input with a `narHash` in flake.lock is fetched by that hash, so an edit inside it
would go unseen (or fail) until the user re-locks. `fresh_overrides` overrides each such input
with its own path: Nix then locks it as it is on disk at every evaluation, as if re-locked,
and the user's flake.lock is never written. (A relative path input without a hash is part
of the root's tree already.)
"""

from __future__ import annotations

import json
import os
from protocol.config import EvalConfig
from protocol.flakeref import local_flake_dir, split_flake_ref

from .errors import EvixError
from .inotify_watch import Root


class WatchError(EvixError):
    """The config cannot be watched (the message says why)."""


def watch_roots(config: EvalConfig, extra: tuple[str, ...] = ()) -> list[Root]:
    """The directories whose changes re-evaluate `config` (absolute paths)."""
    roots = [_root_of(os.path.abspath(p)) for p in extra]
    if config.expr is not None:
        raise WatchError("--expr cannot be watched: there is no file on disk to watch (use --file)")
    if config.file is not None:
        if config.file.startswith("<"):
            raise WatchError(f"--file {config.file} is found along the lookup path: give its path instead")
        return [Root(os.path.dirname(os.path.abspath(config.file))), *roots]
    assert config.flake is not None
    root = flake_root(config.flake)
    return [Root(root), *(Root(path) for _, path, _ in path_inputs(root)), *roots]


def _root_of(path: str) -> Root:
    """A `--watch` path: a directory tree, or a file's directory (its siblings count too)."""
    return Root(path) if os.path.isdir(path) or not os.path.exists(path) else Root(os.path.dirname(path), False)


def flake_root(flake: str) -> str:
    """The local directory of `flake` (absolute reference); WatchError for a remote one."""
    ref, _ = split_flake_ref(flake)
    directory = local_flake_dir(ref)
    if directory is None:
        raise WatchError(f"--flake {flake} is not a local flake: there is nothing on disk to watch "
                         "(watch a checkout of it, e.g. --flake path:/src/project)")
    sub = dict(part.split("=", 1) for part in ref.partition("?")[2].split("&") if "=" in part).get("dir")
    return os.path.join(str(directory), sub) if sub else str(directory)


def path_inputs(root: str) -> list[tuple[str, str, bool]]:
    """(input path as --override-input names it, directory, locked by hash) of every `path`
    input in `root`/flake.lock, inputs of inputs included."""
    try:
        with open(os.path.join(root, "flake.lock"), "rb") as f:
            lock = json.load(f)
    except (OSError, ValueError):
        return []
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


def fresh_overrides(config: EvalConfig) -> tuple[tuple[str, str], ...]:
    """`--override-input` pairs that override each hash-locked path input of `config` by its
    path (see the module doc); the user's own override of an input (or of its parent) wins."""
    if config.flake is None:
        return ()
    mine = {name for name, _ in config.override_inputs}
    return tuple((name, f"path:{path}") for name, path, hashed in path_inputs(flake_root(config.flake))
                 if hashed and name not in mine and not any(name.startswith(m + "/") for m in mine))
