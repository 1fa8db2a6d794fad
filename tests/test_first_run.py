"""The first run from a clone (issue 13): `scripts/dev setup` in a copy of the tree prints our
progress lines only (pip's and the compiler's words go to the log it names), `scripts/dev
install` puts the commands on PATH, and the README's example then works as written. The
bootstrap, without root, names the exact packages to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from evix_helpers import REPO, cannot_run_here
from tree_copy import source_copy

SETUP_TIMEOUT = 900  # seconds: a fresh venv, its dependencies and the nixffi build, on a shared machine


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the tree after its first `scripts/dev setup`."""
    clone = source_copy(tmp_path_factory.mktemp("clone") / "evix")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not p.startswith(str(REPO)))
    proc = subprocess.run(["scripts/dev", "setup"], cwd=clone, capture_output=True, text=True, env=env,
                          timeout=SETUP_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return clone, proc


def test_setup_prints_only_our_progress_lines(fresh_clone) -> None:
    clone, proc = fresh_clone
    lines = proc.stderr.splitlines()
    assert any("creating" in line and "log: build/setup.log" in line for line in lines), proc.stderr
    assert all(line.startswith(("[dev] ", "[bootstrap-nix ")) for line in lines), proc.stderr
    log = (clone / "build" / "setup.log").read_text()
    assert "Successfully installed" in log  # pip's words are kept there, not lost


def test_install_links_the_commands_and_the_readme_example_works(fresh_clone, tmp_path: Path) -> None:
    clone, _ = fresh_clone
    bin_dir = tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "EVIX_SOCKET")}
    env.update(EVIX_BIN_DIR=str(bin_dir), PATH="/usr/bin:/bin")
    proc = subprocess.run(["scripts/dev", "install"], cwd=clone, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"linked evix, evixd and evix-eval-jobs into {bin_dir}" in proc.stderr
    assert f"{bin_dir} is not on PATH" in proc.stderr
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"  # as the README says, and nothing else
    version = subprocess.run(["evix", "--version"], capture_output=True, text=True, env=env, cwd="/")
    assert version.returncode == 0 and "Nix 2.26" in version.stdout, version.stderr
    readme = (REPO / "README.md").read_text()
    example = "evix eval --file examples/jobs.nix --workers 2"
    assert f"$ {example}\n" in readme
    ev = subprocess.run(example.split(), capture_output=True, text=True, env=env, cwd=clone, timeout=120)
    assert ev.returncode == 0, ev.stderr
    assert '"attr":"hello"' in ev.stdout and '"attr":"tools.broken"' in ev.stdout


def test_bootstrap_without_root_names_the_packages_to_install() -> None:
    """As a user that is not root, on a system where dpkg knows none of the packages (a
    dpkg-query that lists nothing stands in for a bare system)."""
    if shutil.which("setpriv") is None or os.getuid() != 0:
        cannot_run_here("needs root and setpriv to run the bootstrap as another user")
    with tempfile.TemporaryDirectory() as tmp:  # not pytest's tmp_path: another user must reach it
        top = Path(tmp)
        top.chmod(0o755)
        fake = top / "fakebin"
        fake.mkdir()
        (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
        (fake / "dpkg-query").chmod(0o755)
        for script in ("bootstrap-nix", "nix-paths.sh"):  # where that user can read them
            shutil.copy2(REPO / "scripts" / script, top / script)
        env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": tmp, "EVIX_CACHE_DIR": str(top / "cache"),
               "PKG_CONFIG_PATH": str(top / "none")}
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               str(top / "bootstrap-nix")], capture_output=True, text=True, env=env,
                              timeout=60)
        assert not (top / "cache").exists()  # it stopped before doing anything
    assert proc.returncode == 1
    assert "install them as root, then run this again" in proc.stderr
    command = next(line for line in proc.stderr.splitlines() if "apt-get install" in line).split()
    assert command[:3] == ["apt-get", "install", "--no-install-recommends"]
    assert {"python3-dev", "python3-venv", "build-essential", "libgc-dev", "pkgconf"} <= set(command)
