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


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, EVIX_NIX_PREFIX=str(tmp_path / "prefix"), PKG_CONFIG_PATH=str(tmp_path / "pc"))
    env.pop("PKG_CONFIG_LIBDIR", None)
    env.update(extra)
    (tmp_path / "pc").mkdir(exist_ok=True)
    return env


def _fake_pc(tmp_path: Path, version: str) -> None:
    (tmp_path / "pc").mkdir(exist_ok=True)
    (tmp_path / "pc" / "nix-expr-c.pc").write_text(f"Name: nix-expr-c\nDescription: x\nVersion: {version}\n")


def _ubuntu(tmp_path: Path) -> str:
    path = tmp_path / "os-release"
    path.write_text('ID=ubuntu\nVERSION_CODENAME=noble\nPRETTY_NAME="Ubuntu 24.04"\n')
    return str(path)


def test_an_installed_nix_c_api_skips_the_build(tmp_path: Path) -> None:
    _fake_pc(tmp_path, "2.30.1")
    proc = subprocess.run([str(BOOTSTRAP)], capture_output=True, text=True, timeout=30, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "pkg-config finds nix-expr-c 2.30.1: using the installed Nix" in proc.stderr
    assert not (tmp_path / "prefix").exists()


def test_an_older_nix_does_not_count_and_other_systems_are_refused(tmp_path: Path) -> None:
    _fake_pc(tmp_path, "2.24.0")
    env = _env(tmp_path, EVIX_OS_RELEASE=_ubuntu(tmp_path))
    proc = subprocess.run([str(BOOTSTRAP)], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 1
    assert "Debian 12 (bookworm); this is Ubuntu 24.04" in proc.stderr
    assert "pkg-config nix-expr-c" in proc.stderr  # says what to install instead


def test_a_prefix_without_its_stamp_is_not_taken_as_built(tmp_path: Path) -> None:
    lib = tmp_path / "prefix" / "lib"
    lib.mkdir(parents=True)
    (lib / "libnixexprc.so").write_text("half-built")  # an interrupted build left this
    env = _env(tmp_path, EVIX_OS_RELEASE=_ubuntu(tmp_path))
    proc = subprocess.run([str(BOOTSTRAP)], capture_output=True, text=True, timeout=30, env=env)
    assert "already built" not in proc.stderr
    assert proc.returncode == 1 and "Debian 12" in proc.stderr  # it would build, were this Debian
