"""Rewriting a Hydra aggregate's .drv so that it depends on its named constituents, as
nix-eval-jobs does after resolving them: each constituent's .drv becomes an input (its first
output, by name), `out` is recomputed, and the new .drv is written to the store.

Rather than re-implementing Nix's derivation hashing, the same derivation is built again by
Nix: `derivationStrict` gets the old .drv's environment and arguments, with a string context
on `builder` naming every input (the old ones and the constituents), so Nix computes the
output path (hashDerivationModulo) and writes the .drv exactly as it writes any other.
"""

from __future__ import annotations

import orjson

import nixffi
from protocol import aterm

_REBUILD = """
json:
let
  d = builtins.fromJSON json;
  drv = builtins.derivationStrict (d.attrs // { builder = builtins.appendContext d.attrs.builder d.context; });
in builtins.toJSON { inherit (drv) drvPath out; }
"""


def rewrite(state: nixffi.EvalState, drv_path: str, children: list[str]) -> tuple[str, dict[str, str]] | str:
    """(new drvPath, {"out": new path}), or why the derivation cannot be rewritten (a string)."""
    drv = aterm.read(drv_path)
    if "__json" in drv.env:
        return "structured attributes are not rewritten"
    if set(drv.outputs) != {"out"} or not drv.outputs["out"].input_addressed:
        return "only input-addressed derivations with the single output 'out' are rewritten"
    inputs = {p: sorted(outs) for p, outs in drv.input_drvs.items()}
    for child in children:
        inputs[child] = [sorted(aterm.read(child).outputs)[0]]
    context: dict[str, dict[str, object]] = {p: {"path": True} for p in drv.input_srcs}
    context.update({p: {"outputs": outs} for p, outs in inputs.items()})
    attrs: dict[str, object] = {k: v for k, v in drv.env.items() if k not in drv.outputs}
    attrs["args"] = drv.args
    request = orjson.dumps({"attrs": attrs, "context": context}).decode()
    result = orjson.loads(state.helper(_REBUILD).call(state.string(request)).as_str())
    return result["drvPath"], {"out": result["out"]}
