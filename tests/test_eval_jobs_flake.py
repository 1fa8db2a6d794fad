"""`evix-eval-jobs --flake`: both argument orders, pure mode unless --impure, --select on a
fragment and on the whole flake (Hydra's form), --override-input and --reference-lock-file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from eval_jobs_helpers import FLAKES, eval_jobs
from evix_helpers import eval_locally, nix_bin

FLAKE = """{
  inputs.dep.url = "path:%s";
  outputs = { self, dep }:
    let mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; src = self; }; in {
      hydraJobs = {
        hello = mk "hello-${dep.word}";
        "dotted.job" = mk "dotted";
        nested = { recurseForDerivations = true; inner = mk "inner"; };
      };
      checks.x86_64-linux.test = mk "check";
      impureJobs.sys = mk "sys-${builtins.currentSystem}";
    };
}
"""
HYDRA_SELECT = 'flake: flake.outputs.hydraJobs or flake.outputs.checks or (throw "flake does not provide any Hydra jobs or checks")'


def _dep(d: Path, word: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "flake.nix").write_text('{ outputs = { self }: { word = "%s"; }; }\n' % word)
    return d


def _flake(d: Path, dep: Path) -> Path:
    d.mkdir(parents=True)
    (d / "flake.nix").write_text(FLAKE % dep)
    subprocess.run([nix_bin("nix"), *FLAKES, "flake", "lock"], cwd=d, check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def flake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ejflake")
    _dep(root / "dep", "original")
    _dep(root / "other", "overridden")
    return _flake(root / "main", root / "dep")


def _nix_drv(flake: Path, attr: str) -> str:
    out = subprocess.run([nix_bin("nix"), *FLAKES, "eval", "--raw", f"path:{flake}#{attr}.drvPath"],
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_flake_fragment_in_either_order(flake: Path):
    first = eval_jobs("--flake", ".#hydraJobs", cwd=flake)
    after = eval_jobs(".#hydraJobs", "--flake", cwd=flake)
    assert first.code == 0, first.stderr
    assert first.stdout == after.stdout
    jobs = first.by_attr()
    assert list(jobs) == ['"dotted.job"', "hello", "nested.inner"]
    assert jobs["hello"]["drvPath"] == _nix_drv(flake, "hydraJobs.hello")
    assert jobs['"dotted.job"']["drvPath"] == _nix_drv(flake, 'hydraJobs."dotted.job"')
    assert jobs["nested.inner"]["drvPath"] == _nix_drv(flake, "hydraJobs.nested.inner")


def test_hydra_select_over_the_whole_flake(flake: Path):
    selected = eval_jobs("--option", "eval-cache", "false", "--flake", str(flake), "--select", HYDRA_SELECT)
    assert selected.code == 0, selected.stderr
    assert selected.stdout == eval_jobs("--flake", ".#hydraJobs", cwd=flake).stdout
    inputs = eval_jobs("--flake", str(flake), "--select", "flake: { inherit (flake.inputs.dep.outputs) word; x = flake.outputs.checks.x86_64-linux; }")
    assert inputs.code == 0, inputs.stderr
    assert [j["attr"] for j in inputs.events] == []  # x is not marked for recursion, word is a string
    wrong = eval_jobs("--flake", str(flake), "--select", "flake: 1")
    assert wrong.code == 1 and "--select must evaluate to an attribute set" in wrong.stderr


def test_select_on_a_fragment(flake: Path):
    run = eval_jobs("--flake", ".#checks", "--select", "checks: checks.x86_64-linux", cwd=flake)
    assert run.code == 0, run.stderr
    assert [(j["attr"], j["drvPath"]) for j in run.events] == [("test", _nix_drv(flake, "checks.x86_64-linux.test"))]


def test_flakes_are_pure_unless_impure(flake: Path):
    pure = eval_jobs("--flake", ".#impureJobs", cwd=flake)
    assert pure.code == 0, pure.stderr
    assert "currentSystem" in pure.by_attr()["sys"]["error"]
    impure = eval_jobs("--impure", "--flake", ".#impureJobs", cwd=flake)
    assert impure.code == 0, impure.stderr
    assert impure.by_attr()["sys"]["name"] == "sys-x86_64-linux"


def test_override_input_and_reference_lock_file(flake: Path, tmp_path: Path):
    other = flake.parent / "other"
    overridden = eval_jobs("--flake", ".#hydraJobs", "--override-input", "dep", f"path:{other}", cwd=flake)
    assert overridden.code == 0, overridden.stderr
    assert overridden.by_attr()["hello"]["name"] == "hello-overridden"
    alt = _flake(tmp_path / "alt", other)  # the same flake locked against `other`
    referenced = eval_jobs("--flake", ".#hydraJobs", "--reference-lock-file", str(alt / "flake.lock"), cwd=flake)
    assert referenced.code == 0, referenced.stderr
    assert referenced.by_attr()["hello"]["name"] == "hello-overridden"
    assert eval_jobs("--flake", ".#hydraJobs", cwd=flake).by_attr()["hello"]["name"] == "hello-original"
    shutil.rmtree(alt)


GIT_FLAKE = """{ outputs = { self }: {
  jobs.src = derivation { name = "git-src"; system = "x86_64-linux"; builder = "/bin/sh"; src = self; };
  jobs.rev = derivation { name = "rev-${self.rev or self.dirtyRev or "none"}"; system = "x86_64-linux"; builder = "/bin/sh"; };
}; }
"""


def test_a_flake_in_a_git_repository_is_a_git_flake_clean_or_dirty(tmp_path: Path):
    repo = tmp_path / "repo"
    sub = repo / "sub"
    sub.mkdir(parents=True)
    (sub / "flake.nix").write_text(GIT_FLAKE)
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    for state in ("clean", "dirty"):
        if state == "dirty":
            (sub / "flake.nix").write_text(GIT_FLAKE + "# changed\n")
        run = eval_jobs("--flake", ".#jobs", cwd=sub)
        assert run.code == 0, run.stderr
        for attr in ("src", "rev"):
            truth = subprocess.run([nix_bin("nix"), *FLAKES, "eval", "--raw", f".#jobs.{attr}.drvPath"], cwd=sub,
                                   capture_output=True, text=True, check=True).stdout
            assert run.by_attr()[attr]["drvPath"] == truth, (state, attr)
        assert ("-dirty" in run.by_attr()["rev"]["name"]) is (state == "dirty")
        assert ("cannot be locked: evaluating in impure mode" in run.stderr) is (state == "dirty")
    events = eval_locally("--flake", ".#jobs", cwd=sub)  # evix eval reads the same reference the same way
    assert events.derivations()["src"]["drvPath"] == run.by_attr()["src"]["drvPath"]
