"""Flakes on the 2.26 C API, which has no locking functions.

Without overrides we let Nix do everything: `builtins.getFlake REF` locks the flake with its
flake.lock exactly as `nix eval REF#...` does. With `--override-input`, we call the flake
ourselves over the nodes of its flake.lock (each fetched with `builtins.fetchTree` from its
locked attributes), replacing the inputs named by a path (`dep`, `dep/nested`) with the flakes
they are overridden by. `--override-flake` redirects indirect references (`nixpkgs`,
`flake:nixpkgs/branch`) as Nix's flag registry does: `resolve_indirect` rewrites them first.
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

    `overrides` maps an input path (`dep`, or `dep/sub` for an input of an input) to a flake
    reference (absolute for local ones);
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


def unmatched_inputs(lock_json: str, paths: list[str]) -> list[str]:
    """The input paths (`dep`, `dep/sub`) that name no input in the flake.lock `lock_json`, so
    that an override of one can be warned about, as Nix warns."""
    lock = json.loads(lock_json)
    nodes = lock.get("nodes", {})

    def node_at(names: list[str]) -> str | None:
        node: str | None = lock.get("root", "root")
        for name in names:
            spec = nodes.get(node, {}).get("inputs", {}).get(name)
            node = node_at(spec) if isinstance(spec, list) else spec
            if node is None:
                return None
        return node

    return [p for p in paths if node_at(p.split("/")) is None]


def locked_flake_ref(state: EvalState, ref: str) -> str | None:
    """`ref` locked to what it points at now (its narHash, and rev when it has one), so that
    `builtins.getFlake` accepts it in pure evaluation mode; None when it cannot be locked (a
    dirty Git tree has no rev). `state` must be impure."""
    enable_flakes()
    return state.helper(_LOCK_REF).call(state.string(ref)).as_str() or None


def resolve_indirect(state: EvalState, ref: str, registry: list[tuple[str, str]]) -> str:
    """`ref` (no fragment) redirected through `registry` [(ORIGINAL, RESOLVED)] as Nix's
    `--override-flake` entries redirect it: only an indirect reference, matched when it has every
    attribute ORIGINAL has, keeping its own ref/rev/dir where ORIGINAL gives none; repeated
    while the result is indirect and matches. Unmatched: `ref` unchanged (Nix's registries
    resolve it later)."""
    if not registry:
        return ref
    enable_flakes()
    entries = json.dumps([{"from": o, "to": r} for o, r in registry])
    return state.helper(_RESOLVE_INDIRECT).call(state.attrs({"ref": state.string(ref), "registry": state.string(entries)})).as_str()


_RESOLVE_INDIRECT = """
{ ref, registry }:
let
  parse = builtins.parseFlakeRef;
  entries = map (e: { from = parse e.from; to = parse e.to; }) (builtins.fromJSON registry);
  contains = from: input: builtins.all (k: input ? ${k} && input.${k} == from.${k}) (builtins.attrNames from);
  kept = from: to: input: builtins.listToAttrs (builtins.concatMap (k:
    if input ? ${k} && !(from ? ${k}) && !(to ? ${k}) then [ { name = k; value = input.${k}; } ] else [])
    [ "ref" "rev" "dir" ]);
  step = n: input:
    let hits = builtins.filter (e: contains e.from input) entries; e = builtins.head hits; in
    if input.type != "indirect" || hits == [] then input
    else if n > 100 then throw "cycle detected in the --override-flake entries for '${ref}'"
    else step (n + 1) (e.to // kept e.from e.to input);
  input = parse ref;
in if input.type == "indirect" then builtins.flakeRefToString (step 0 input) else ref
"""


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
# its `locked` attributes; an input given as a list follows a path of inputs from the root,
# walked over the called flakes, so that it reaches an override on that path. A node is called
# once (`nodes`) unless an override lies below the path it is reached by (`nodeAt`).
_CALL_FLAKE = """
{ lockJSON, rootRef, overrides }:
let
  lock = builtins.fromJSON lockJSON;
  follow = path: nodeName:
    if path == [] then nodeName
    else follow (builtins.tail path) (resolve lock.nodes.${nodeName}.inputs.${builtins.head path});
  resolve = spec: if builtins.isList spec then follow spec lock.root else spec;
  key = path: builtins.concatStringsSep "/" path;
  hasOverrideBelow = path: let prefix = key path + "/"; len = builtins.stringLength prefix; in
    builtins.any (o: builtins.substring 0 len o == prefix) (builtins.attrNames overrides);
  walk = path: builtins.foldl' (flake: name: flake.inputs.${name}) root path;
  overridden = path: node:
    if node.flake or true then builtins.getFlake overrides.${key path} else builtins.fetchTree overrides.${key path};
  nodeAt = path: name: if hasOverrideBelow path then call path name else nodes.${name};
  call = path: name:
    let
      node = lock.nodes.${name};
      isRoot = path == [];
      rootFlake = builtins.getFlake rootRef;
      # A relative `path:./sub` input (lock entry with `parent`) lives inside its parent's source.
      parent = walk node.parent;
      sourceInfo = if isRoot then rootFlake.sourceInfo
                   else if node ? parent then parent.sourceInfo // { outPath = "${parent.outPath}/${node.locked.path}"; }
                   else builtins.fetchTree (removeAttrs node.locked [ "dir" ]);
      dir = if isRoot || node ? parent then "" else node.locked.dir or "";
      src = if isRoot then rootFlake.outPath
            else if dir == "" then sourceInfo.outPath else "${sourceInfo.outPath}/${dir}";
      flake = import (src + "/flake.nix");
      inputs = builtins.mapAttrs (input: spec:
        let at = path ++ [ input ]; in
        if path != null && overrides ? ${key at} then overridden at lock.nodes.${resolve spec}
        else if builtins.isList spec then walk spec
        else if path == null then nodes.${spec}
        else nodeAt at spec) (node.inputs or {});
      outputs = flake.outputs (inputs // { self = result; });
      result = outputs // sourceInfo // { outPath = src; inherit inputs outputs sourceInfo; _type = "flake"; };
    in if node.flake or true then result else sourceInfo;
  # shared by every path without an override below it (path null: no override can apply)
  nodes = builtins.mapAttrs (name: _: call null name) lock.nodes;
  root = call [] lock.root;
in root
"""
