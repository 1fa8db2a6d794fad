"""Fields of a derivation event beyond name, system, drvPath and outputs that cost a Nix call
or a .drv read, so they are computed only when asked for: --apply's `extraValue`, aggregate
constituents as nix-eval-jobs' --constituents reads them, and what the .drv says
(`requiredSystemFeatures`, `system` as its platform)."""

from __future__ import annotations

from typing import Any

import orjson

import nixffi


# --apply: the function's result must be a set; as JSON the way nix-eval-jobs prints it
# (printValueAsJSON: derivations become their outPath, paths are copied to the store).
_APPLY = """
f: drv:
let result = f drv; in
if builtins.isAttrs result then builtins.toJSON result
else throw "--apply must evaluate to an attribute set, not a ${builtins.typeOf result}"
"""

# nix-eval-jobs' reading of an aggregate: drvPaths from the string context of `constituents`
# (one per output referred to, sorted), string elements as job names to resolve later.
_CONSTITUENTS = """
drv:
if !drv._hydraAggregate then null
else if !(drv ? constituents) then throw "derivation must have a 'constituents' attribute"
else
  let
    cs = drv.constituents;
    context = builtins.getContext (toString cs);
    built = builtins.concatMap (p: map (_: p) (context.${p}.outputs or [ ])) (builtins.attrNames context);
  in builtins.toJSON {
    constituents = built;
    namedConstituents = builtins.filter builtins.isString cs;
    globConstituents = if drv ? _hydraGlobConstituents then (if drv._hydraGlobConstituents then true else false) else false;
  }
"""


def extra_value(drv: nixffi.Value, apply: nixffi.Value) -> bytes:
    """The JSON of `apply drv` (NixError when it fails or is not a set)."""
    return drv.state.helper(_APPLY).call(apply, drv).as_str().encode()


def eval_jobs_constituents(drv: nixffi.Value) -> dict[str, Any] | None:
    """{constituents, namedConstituents, globConstituents} of an aggregate
    (`_hydraAggregate = true`), None for other derivations; NixError as nix-eval-jobs fails."""
    result = drv.state.helper(_CONSTITUENTS).call(drv)
    return None if result.type == nixffi.ValueType.NULL else orjson.loads(result.as_str())
