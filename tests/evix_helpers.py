"""Helpers for the engine's acceptance tests: run the real `evix` CLI, ask the same Nix for
the truth (`nix-instantiate`), and compare."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.events import EventKind, event_kind

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def nix_bin(name: str) -> str:
    """A Nix CLI tool of the Nix the tests use (bootstrapped or the user's)."""
    found = shutil.which(name)
    if found:
        return found
    prefix = os.environ.get("EVIX_NIX_PREFIX") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "evix", "nix-2.26.3"
    )
    candidate = os.path.join(prefix, "bin", name)
    if os.path.exists(candidate):
        return candidate
    raise RuntimeError(f"{name} not found: run scripts/dev setup (or put Nix >= 2.26 on PATH)")


@dataclass
class Run:
    code: int
    events: list[dict[str, Any]]
    stderr: str

    def by_attr(self) -> dict[str, dict[str, Any]]:
        return {e["attr"]: e for e in self.events}

    def derivations(self) -> dict[str, dict[str, Any]]:
        return {e["attr"]: e for e in self.events if event_kind(e) is EventKind.DERIVATION}

    def errors(self) -> dict[str, dict[str, Any]]:
        return {e["attr"]: e for e in self.events if event_kind(e) is EventKind.ERROR}

    def canonical(self) -> list[str]:
        """The events as a sorted list of JSON strings: equal for equal event sets."""
        return sorted(json.dumps(e, sort_keys=True) for e in self.events)


def evix_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "evix_client", *args]


def run_evix(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    """Runs `evix eval ARGS --no-daemon` and parses its NDJSON output."""
    cmd = evix_command("eval", "--no-daemon", *args)
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("PYTHONPATH", str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return Run(proc.returncode, events, proc.stderr)


def nix_string(s: str) -> str:
    """`s` as a Nix string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def nix_drv_paths(source: str, attr_paths: list[list[str]], *, cwd: str | Path | None = None) -> dict[str, str]:
    """drvPaths of `attr_paths` in `source` (a Nix expression) as nix-instantiate computes
    them, in one call: {".".join(path): drvPath}."""
    selections = " ".join(
        f"{nix_string('.'.join(p))} = (root{''.join('.' + nix_string(e) for e in p)}).drvPath;" for p in attr_paths
    )
    wrapper = f"root: {{ {selections} }}"
    expr = f"({wrapper}) ({source})"
    cmd = [nix_bin("nix-instantiate"), "--eval", "--strict", "--json", "--expr", expr]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if out.returncode != 0:
        raise AssertionError(f"nix-instantiate failed: {out.stderr}")
    return json.loads(out.stdout)
