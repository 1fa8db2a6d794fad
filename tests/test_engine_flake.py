"""`evix eval --flake`: the fragment selects the root; `--override-input` replaces a path input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from evix_helpers import nix_bin, eval_locally

FLAKES = ["--extra-experimental-features", "nix-command flakes"]


def _write_dep(d: Path, word: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "flake.nix").write_text(
        "{ outputs = { self }: { word = \"" + word + "\"; }; }\n"
    )


@pytest.fixture(scope="module")
def flake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flake")
    _write_dep(root / "dep", "original")
    _write_dep(root / "other", "overridden")
    main = root / "main"
    main.mkdir()
    (main / "flake.nix").write_text(
        """{
  inputs.dep.url = "path:%s";
  outputs = { self, dep }:
    let mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; src = self; }; in {
      hydraJobs = {
        hello = mk "hello-${dep.word}";
        nested = { recurseForDerivations = true; inner = mk "inner"; };
      };
      packages.x86_64-linux.default = mk "pkg";
      fnJobs = { suffix ? "-d" }: { hello = mk "fn${suffix}"; };
    };
}
""" % (root / "dep")
    )
    subprocess.run([nix_bin("nix"), *FLAKES, "flake", "lock"], cwd=main, check=True, capture_output=True)
    return main


def _nix_eval_drv(ref: str, *extra: str) -> str:
    out = subprocess.run([nix_bin("nix"), *FLAKES, "eval", "--raw", *extra, ref], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_flake_fragment_selects_the_root(flake: Path):
    run = eval_locally("--flake", ".#hydraJobs", cwd=flake)
    assert run.code == 0, run.stderr
    drvs = run.derivations()
    assert set(drvs) == {"hello", "nested.inner"}
    assert drvs["hello"]["name"] == "hello-original"
    assert drvs["hello"]["drvPath"] == _nix_eval_drv(f"path:{flake}#hydraJobs.hello.drvPath")
    assert drvs["nested.inner"]["drvPath"] == _nix_eval_drv(f"path:{flake}#hydraJobs.nested.inner.drvPath")


def test_a_flake_root_that_is_a_function_is_auto_called(flake: Path):
    run = eval_locally("--flake", ".#fnJobs", "--argstr", "suffix", "-x", cwd=flake)
    assert run.code == 0, run.stderr
    assert set(run.derivations()) == {"hello"}
    expected = _nix_eval_drv(f"path:{flake}#fnJobs", "--apply", 'f: (f { suffix = "-x"; }).hello.drvPath')
    assert run.derivations()["hello"]["drvPath"] == expected


def test_flake_without_fragment_walks_the_outputs(flake: Path):
    run = eval_locally("--flake", str(flake), "--force-recurse")
    assert run.code == 0, run.stderr
    assert "packages.x86_64-linux.default" in run.derivations()
    assert "hydraJobs.hello" in run.derivations()


def test_override_input_replaces_a_path_input(flake: Path):
    other = flake.parent / "other"
    run = eval_locally("--flake", ".#hydraJobs", "--override-input", "dep", f"path:{other}", cwd=flake)
    assert run.code == 0, run.stderr
    hello = run.derivations()["hello"]
    assert hello["name"] == "hello-overridden"
    expected = _nix_eval_drv(f"path:{flake}#hydraJobs.hello.drvPath", "--override-input", "dep", f"path:{other}")
    assert hello["drvPath"] == expected


def test_a_missing_flake_output_is_fatal(flake: Path):
    run = eval_locally("--flake", ".#noSuchOutput", cwd=flake)
    assert run.code == 1
    assert "noSuchOutput" in run.stderr and "Traceback" not in run.stderr
