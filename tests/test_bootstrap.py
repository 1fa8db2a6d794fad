"""scripts/bootstrap-nix on a machine where Nix is already built (never forces a rebuild),
and flake.nix at least parsing with the same Nix."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nix_helpers import REPO_ROOT, default_nix_prefix, run

BOOTSTRAP = REPO_ROOT / "scripts" / "bootstrap-nix"


def bootstrap(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run([str(BOOTSTRAP), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def already_built() -> bool:
    """True when a run without --force must be a no-op (else running it would start a build)."""
    stamp = default_nix_prefix() / ".evix-bootstrap-complete"
    if stamp.is_file():
        return True
    if shutil.which("pkg-config") is None:
        return False
    probe = subprocess.run(["pkg-config", "--atleast-version=2.26", "nix-expr-c"], capture_output=True)
    return probe.returncode == 0


def test_second_run_is_quick_noop() -> None:
    assert already_built(), "no finished Nix build found: run `scripts/dev setup` first (this test never builds)"
    prefix = default_nix_prefix()
    before = {p: p.stat().st_mtime_ns for p in (prefix / "lib").glob("libnix*c.so*")} if prefix.is_dir() else {}
    proc, seconds = bootstrap()
    assert proc.returncode == 0, proc.stderr
    assert seconds < 10, f"a no-op run took {seconds:.1f} s"
    assert "already built" in proc.stderr or "pkg-config finds nix-expr-c" in proc.stderr, proc.stderr
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before, "a no-op run must not touch the installed libraries"


def test_help() -> None:
    for flag in ("--help", "-h"):
        proc, seconds = bootstrap(flag)
        assert proc.returncode == 0, proc.stderr
        assert "--force" in proc.stdout and "bootstrap-nix" in proc.stdout
        assert seconds < 10


@pytest.mark.parametrize("arg", ["--no-such-option", "build"])
def test_bad_argument_fails(arg: str) -> None:
    proc, _ = bootstrap(arg)
    assert proc.returncode == 1
    assert f"unknown argument '{arg}'" in proc.stderr
    assert "--help" in proc.stderr


def test_nix_paths_default_prefix_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest's fallback prefix is the one scripts/nix-paths.sh computes."""
    monkeypatch.delenv("EVIX_NIX_PREFIX", raising=False)
    monkeypatch.delenv("EVIX_CACHE_DIR", raising=False)
    out = run(["bash", "-c", '. scripts/nix-paths.sh && printf %s "$EVIX_NIX_PREFIX"'], cwd=REPO_ROOT,
              env=dict(os.environ)).stdout
    assert Path(out) == default_nix_prefix()


def test_flake_nix_parses() -> None:
    flake = REPO_ROOT / "flake.nix"
    run(["nix-instantiate", "--parse", str(flake)])
    # its shape, evaluated without fetching anything: inputs and the outputs function's arguments
    inputs = run(["nix-instantiate", "--eval", "--strict", "--json", "-E",
                  f"builtins.attrNames (import {flake}).inputs"]).stdout
    assert "nixpkgs" in inputs
    args = run(["nix-instantiate", "--eval", "--strict", "--json", "-E",
                f"builtins.attrNames (builtins.functionArgs (import {flake}).outputs)"]).stdout
    assert "nixpkgs" in args and "self" in args
