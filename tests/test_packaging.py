"""pip packaging (issue 13): an sdist of the tree builds a wheel, the wheel installs into a
fresh venv whose `evix` evaluates against the Nix that pkg-config finds; and a build where
pkg-config finds no Nix C API stops with a message saying how to get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from evix_helpers import REPO, nix_bin
from nix_helpers import nix_instantiate, write_nix
from tree_copy import source_copy

PIP_TIMEOUT = 600  # seconds: dependencies may come from the index on a cold pip cache


def pip(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=PIP_TIMEOUT)


def build_sdist(src: Path, out: Path) -> Path:
    """The sdist, through setuptools' PEP 517 hook (what `python -m build --sdist` calls)."""
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out / proc.stdout.split()[-1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from the sdist: its bin directory."""
    top = tmp_path_factory.mktemp("packaging")
    sdist = build_sdist(source_copy(top / "src"), top)
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for needed in ("setup.py", "pyproject.toml", "nixffi/_build.py", "nixffi/_traverse.c", "nixffi/_readonly.cc",
                   "protocol/in_flight.py", "protocol/schema/worker.capnp", "evixd/engine/__init__.py"):
        assert any(n.endswith("/" + needed) for n in names), f"sdist lacks {needed}"
    wheel = pip("wheel", "--no-deps", "-w", str(top / "wheels"), str(sdist))
    assert wheel.returncode == 0, wheel.stdout + wheel.stderr
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (whl,) = (top / "wheels").glob("evix-*.whl")
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(whl)], capture_output=True, text=True,
                             timeout=PIP_TIMEOUT)
    assert install.returncode == 0, install.stderr
    return venv / "bin"


def test_the_wheel_has_every_subpackage(installed: Path) -> None:
    site = subprocess.run([str(installed / "python"), "-c", "import evixd.engine, evixd.daemon, nixffi._nixlib, "
                           "protocol.in_flight; print(evixd.engine.__file__)"],
                          capture_output=True, text=True, cwd="/")
    assert site.returncode == 0, site.stderr
    assert not site.stdout.startswith(str(REPO)), "the test must run the installed copy"


def test_installed_evix_version_names_the_nix_it_links(installed: Path) -> None:
    out = subprocess.run([str(installed / "evix"), "--version"], capture_output=True, text=True, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    reference = subprocess.run([nix_bin("nix-instantiate"), "--version"], capture_output=True, text=True,
                               check=True).stdout.split()[-1]
    assert out.stdout.splitlines() == ["evix 0.1.0", f"Nix {reference} (C API)"]


def test_installed_commands_evaluate_as_nix_instantiate_does(installed: Path, tmp_path: Path) -> None:
    jobs = write_nix(tmp_path, "jobs.nix", '{ a = derivation { name = "pkg-a"; system = "x86_64-linux"; '
                                           'builder = "/bin/sh"; }; }')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EVIX_SOCKET")}
    out = subprocess.run([str(installed / "evix"), "eval", "--no-daemon", "--file", str(jobs)], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    drvs = {e["attr"]: e["drvPath"] for e in map(json.loads, out.stdout.splitlines()) if "drvPath" in e}
    assert drvs == {"a": nix_instantiate(jobs, "-A", "a")}
    jobs_out = subprocess.run([str(installed / "evix-eval-jobs"), str(jobs)], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)
    assert jobs_out.returncode == 0, jobs_out.stderr
    assert json.loads(jobs_out.stdout)["drvPath"] == drvs["a"]
    assert subprocess.run([str(installed / "evixd"), "--help"], capture_output=True, env=env).returncode == 0


def test_a_build_without_the_nix_c_api_says_how_to_get_it(tmp_path: Path) -> None:
    src = source_copy(tmp_path / "src")
    empty = tmp_path / "no-pkgconfig"
    empty.mkdir()
    env = dict(os.environ, PKG_CONFIG_PATH="", PKG_CONFIG_LIBDIR=str(empty))
    proc = pip("wheel", "--no-deps", "-w", str(tmp_path / "wheels"), str(src), env=env)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "pkg-config finds no Nix C API (nix-expr-c >= 2.26)" in text
    assert "scripts/bootstrap-nix" in text and "PKG_CONFIG_PATH" in text
    assert "Traceback" not in text and "fatal error" not in text
