"""Flakes on the 2.26 C API, which has no locking functions.

Without overrides we let Nix do everything: `builtins.getFlake REF` locks the flake with its
flake.lock exactly as `nix eval REF#...` does. With `--override-input`, we call the flake
ourselves over the nodes of its flake.lock (each fetched with `builtins.fetchTree` from its
locked attributes), replacing the named root inputs with the flakes they are overridden by.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .settings import enable_flakes
from .state import EvalState
from .value import Value

def load_flake(
    state: EvalState, ref: str, overrides: Mapping[str, str] | None = None, lock_json: str | None = None,
    *, use_lock_json: bool = False,
) -> Value:
    """The flake at `ref` (absolute), as `builtins.getFlake` returns it, with inputs overridden.

    `overrides` maps a root input name to a flake reference (absolute for local ones);
    `lock_json` is the root's flake.lock (None: no lock file), followed instead of the
    flake's own when `use_lock_json` (a reference lock file). Call `nixffi.enable_flakes()`
    before creating `state`.
    """
    enable_flakes()
    get_flake = state.builtin("getFlake")
    if not overrides and not use_lock_json:
        return get_flake.call(state.string(ref))
    overrides = overrides or {}
    args = {
        "lockJSON": state.string(lock_json or json.dumps(_EMPTY_LOCK)),
        "rootRef": state.string(ref),
        "overrides": state.attrs({name: state.string(r) for name, r in overrides.items()}),
    }
    return state.helper(_CALL_FLAKE).call(state.attrs(args))


def locked_flake_ref(state: EvalState, ref: str) -> str | None:
    """`ref` locked to what it points at now (its narHash, and rev when it has one), so that
    `builtins.getFlake` accepts it in pure evaluation mode; None when it cannot be locked (a
    dirty Git tree has no rev). `state` must be impure."""
    enable_flakes()
    return state.helper(_LOCK_REF).call(state.string(ref)).as_str() or None


_LOCK_REF = """
ref:
let
  source = (builtins.getFlake ref).sourceInfo;
  pins = builtins.intersectAttrs { narHash = null; rev = null; } source;
  attrs = builtins.parseFlakeRef ref // pins;
  needsRev = builtins.elem attrs.type [ "git" "github" "gitlab" "sourcehut" "hg" ];
in if needsRev && !(pins ? rev) then "" else builtins.deepSeq attrs (builtins.flakeRefToString attrs)
"""

_EMPTY_LOCK = {"nodes": {"root": {}}, "root": "root", "version": 7}

# Calls a flake from its lock file (format version 7): every node's source is fetched from
# its `locked` attributes; an input given as a list follows a path of inputs from the root.
_CALL_FLAKE = """
{ lockJSON, rootRef, overrides }:
let
  lock = builtins.fromJSON lockJSON;
  follow = path: nodeName:
    if path == [] then nodeName
    else follow (builtins.tail path) (resolve lock.nodes.${nodeName}.inputs.${builtins.head path});
  resolve = spec: if builtins.isList spec then follow spec lock.root else spec;
  overridden = name: node:
    if node.flake or true then builtins.getFlake overrides.${name} else builtins.fetchTree overrides.${name};
  nodes = builtins.mapAttrs (key: node:
    let
      isRoot = key == lock.root;
      rootFlake = builtins.getFlake rootRef;
      # A relative `path:./sub` input (lock entry with `parent`) lives inside its parent's source.
      parent = nodes.${follow node.parent lock.root};
      sourceInfo = if isRoot then rootFlake.sourceInfo
                   else if node ? parent then parent.sourceInfo // { outPath = "${parent.outPath}/${node.locked.path}"; }
                   else builtins.fetchTree (removeAttrs node.locked [ "dir" ]);
      dir = if isRoot || node ? parent then "" else node.locked.dir or "";
      src = if isRoot then rootFlake.outPath
            else if dir == "" then sourceInfo.outPath else "${sourceInfo.outPath}/${dir}";
      flake = import (src + "/flake.nix");
      inputs = builtins.mapAttrs (name: spec:
        let target = resolve spec; in
        if isRoot && overrides ? ${name} then overridden name lock.nodes.${target}
        else nodes.${target}) (node.inputs or {});
      outputs = flake.outputs (inputs // { self = result; });
      result = outputs // sourceInfo // { outPath = src; inherit inputs outputs sourceInfo; _type = "flake"; };
    in if node.flake or true then result else sourceInfo) lock.nodes;
in nodes.${lock.root}
"""
