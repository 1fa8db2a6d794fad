"""Helpers for the evix-eval-jobs tests: run the real command, and ask the same Nix what each
job's fields must be (nix-instantiate for values, `nix derivation show` for the .drv)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from evix_helpers import Run, nix_bin, nix_string, run_evix

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eval_jobs"
FLAKES = ["--extra-experimental-features", "nix-command flakes"]


def eval_jobs(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
              stdin: str | None = None, timeout: float = 180) -> Run:
    """Runs `evix-eval-jobs ARGS` (the console script) and keeps its raw output."""
    return run_evix(*args, program="evix-eval-jobs", cwd=cwd, env=env, timeout=timeout,
                    stdin=stdin.encode() if stdin is not None else None)


def nix_job(source: str, path: list[str], *, cwd: str | Path | None = None) -> dict[str, Any]:
    """name, system, drvPath and outputs of the derivation at `path` of `source`, as Nix evaluates them."""
    sel = "".join("." + nix_string(p) for p in path)
    expr = (f"let d = ({source}){sel}; in {{ inherit (d) name system drvPath; "
            f"outputs = builtins.listToAttrs (map (o: {{ name = o; value = d.${{o}}.outPath; }}) (d.outputs or [\"out\"])); }}")
    out = subprocess.run([nix_bin("nix-instantiate"), "--eval", "--strict", "--json", "--expr", expr],
                         capture_output=True, text=True, cwd=cwd, check=True)
    return json.loads(out.stdout)


def drv_show(drv_path: str) -> dict[str, Any]:
    """`nix derivation show DRV`: what Nix reads from the .drv file."""
    out = subprocess.run([nix_bin("nix"), *FLAKES, "derivation", "show", drv_path], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)[drv_path]


def required_features(drv_path: str) -> list[str]:
    """The .drv's requiredSystemFeatures as Nix parses them (a sorted set)."""
    return sorted(set(drv_show(drv_path)["env"].get("requiredSystemFeatures", "").split()))


def line(job: dict[str, Any]) -> bytes:
    """A job as nix-eval-jobs prints it: keys sorted, compact."""
    return json.dumps(job, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
