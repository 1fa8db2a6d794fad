"""A Nix process that answers the master's store questions, which the master cannot ask itself
(it never loads Nix): which paths are valid, which substituters Nix's settings name, and
writing an aggregate's rewritten .drv (`--constituents`).

Run as `python -m evix_worker.store_service`. One JSON object per line each way:

    -> {"options": [[key, value]], "evalStore": url | null, "nixEvalJobs": bool}   (first)
    <- {"substituters": [url], "useSubstitutes": bool, "storeDir": "/nix/store"}
    -> {"valid": [path]}                     <- {"valid": [bool]}
    -> {"rewrite": drvPath, "children": [drvPath], "gcRootsDir": dir | null}
    <- {"drvPath": new, "outputs": {"out": path}} | {"skipped": why} | {"error": message}
    -> {"lock": flakeRef}                    <- {"locked": ref | null} | {"error": message}
       (the reference locked as remote workers get it; null: it cannot be locked, e.g. a dirty tree)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson

from protocol.aterm import DrvParseError
from protocol.config import EvalConfig

from . import aggregate_drv, gcroots
from .loader import LoadError, apply_options


class _Service:
    def __init__(self, setup: dict[str, Any]) -> None:
        import nixffi

        self.nixffi = nixffi
        nixffi.init()
        config = EvalConfig(options=tuple(tuple(o) for o in setup.get("options", ())),  # type: ignore[misc]
                            nix_eval_jobs=bool(setup.get("nixEvalJobs")))
        apply_options(config)
        self.store = nixffi.Store(setup.get("evalStore") or "")
        self.state: Any = None
        self.flake_state: Any = None

    def settings(self) -> dict[str, Any]:
        get = self.nixffi.get_setting
        return {"substituters": get("substituters").split(), "useSubstitutes": get("substitute") == "true",
                "storeDir": self.store.store_dir}

    def valid(self, paths: list[str]) -> list[bool]:
        return [self._valid(p) for p in paths]

    def _valid(self, path: str) -> bool:
        try:
            return self.store.is_valid_path(path)
        except self.nixffi.NixError:  # not a store path at all
            return False

    def lock(self, ref: str) -> dict[str, Any]:
        if self.flake_state is None:
            self.nixffi.enable_flakes()  # before the state: builtins.getFlake exists only then
            self.flake_state = self.nixffi.EvalState(self.store)
        try:
            return {"locked": self.nixffi.locked_flake_ref(self.flake_state, ref)}
        except self.nixffi.NixError as e:
            return {"error": f"cannot lock the flake reference {ref}: {e.message}"}

    def rewrite(self, drv_path: str, children: list[str], gc_roots_dir: str | None) -> dict[str, Any]:
        if self.state is None:
            self.state = self.nixffi.EvalState(self.store)
        try:
            result = aggregate_drv.rewrite(self.state, drv_path, children)
        except (self.nixffi.NixError, OSError, DrvParseError) as e:
            return {"error": getattr(e, "message", None) or str(e)}
        if isinstance(result, str):
            return {"skipped": result}
        new_drv, outputs = result
        if gc_roots_dir:
            gcroots.add_root(gc_roots_dir, new_drv)
        return {"drvPath": new_drv, "outputs": outputs}


def serve(read: Any, write: Any) -> int:
    line = read.readline()
    if not line:
        return 0
    try:
        service = _Service(orjson.loads(line))
    except LoadError as e:
        write(orjson.dumps({"error": str(e)}) + b"\n")
        return 1
    write(orjson.dumps(service.settings()) + b"\n")
    for line in read:
        req = orjson.loads(line)
        if "valid" in req:
            answer: dict[str, Any] = {"valid": service.valid(req["valid"])}
        elif "lock" in req:
            answer = service.lock(req["lock"])
        elif "rewrite" in req:
            answer = service.rewrite(req["rewrite"], req.get("children", []), req.get("gcRootsDir"))
        else:
            answer = {"error": f"unknown request {sorted(req)}"}
        write(orjson.dumps(answer) + b"\n")
    return 0


def main() -> int:
    out_fd = os.dup(1)
    os.dup2(2, 1)  # stray output from Nix goes to stderr, not into the answers
    out = os.fdopen(out_fd, "wb", buffering=0)
    return serve(sys.stdin.buffer, out.write)


if __name__ == "__main__":
    sys.exit(main())
