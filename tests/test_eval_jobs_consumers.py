"""The exact command lines Hydra, buildbot-nix and nix-fast-build run (as their sources build
them), with their rules for reading each line (issue 12): a CI switches by pointing at
evix-eval-jobs and nothing else changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from eval_jobs_helpers import FIXTURES, FLAKES, eval_jobs
from evix_helpers import nix_bin

FLAKE = """{
  outputs = { self }:
    let
      mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
    in {
      hydraJobs = {
        hello = mk "hello" // { meta = { description = "Hello"; license = [ { shortName = "mit"; } ];
                                         maintainers = [ { email = "a@example.org"; } ]; schedulingPriority = 10; }; };
        tests = { recurseForDerivations = true; unit = mk "unit"; };
        release = mk "release" // { _hydraAggregate = true; constituents = [ "hello" "tests.unit" ]; };
      };
      packages.x86_64-linux = { default = mk "pkg"; "with.dot" = mk "dotted"; };
    };
}
"""
HYDRA_SELECT = 'flake: flake.outputs.hydraJobs or flake.outputs.checks or (throw "flake does not provide any Hydra jobs or checks")'


@pytest.fixture(scope="module")
def flake(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("consumers")
    (d / "flake.nix").write_text(FLAKE)
    subprocess.run([nix_bin("nix"), *FLAKES, "flake", "lock"], cwd=d, check=True, capture_output=True)
    return d


def _hydra_reads(lines: list[dict]) -> dict[str, dict]:
    """hydra-eval-jobset's reading: attr or die; an error is recorded; a job needs a drvPath
    and outputs; an aggregate (constituents present) must not have an error, and its
    constituents must be builds of this evaluation."""
    jobs = {}
    for job in lines:
        name = job["attr"]
        assert name != "", "Jobset contains a job with an empty name"
        jobs[name] = job
        if "error" not in job:
            assert job["drvPath"] and sorted(job["outputs"]), name
    drvs = {j["drvPath"] for j in jobs.values() if "error" not in j}
    for job in jobs.values():
        if "constituents" in job:
            assert "error" not in job, f"aggregate job {job['attr']} failed with the error: {job.get('error')}"
            assert job["drvPath"] in drvs and set(job["constituents"]) <= drvs
    return jobs


def test_hydra_flake_jobset(flake: Path, tmp_path: Path):
    run = eval_jobs("--option", "eval-cache", "false", "--flake", str(flake), "--select", HYDRA_SELECT,
                    "--gc-roots-dir", str(tmp_path / "roots"), "--max-jobs", "1", "--meta", "--constituents",
                    "--force-recurse", "--option", "allow-import-from-derivation", "false",
                    "--workers", "1", "--max-memory-size", "4096")
    assert run.code == 0, run.stderr
    jobs = _hydra_reads(run.events)
    assert list(jobs) == ["hello", "tests.unit", "release"]
    hello = jobs["hello"]
    assert hello["meta"]["description"] == "Hello" and hello["meta"]["license"][0]["shortName"] == "mit"
    assert hello["meta"]["maintainers"][0]["email"] == "a@example.org" and hello["meta"]["schedulingPriority"] == 10
    assert jobs["release"]["constituents"] == [jobs["hello"]["drvPath"], jobs["tests.unit"]["drvPath"]]
    assert all((tmp_path / "roots" / Path(j["drvPath"]).name).is_symlink() for j in jobs.values())


def test_hydra_legacy_jobset(tmp_path: Path):
    env = {"NIX_PATH": ""}  # Hydra deletes it
    run = eval_jobs("--option", "restrict-eval", "true", "<input/jobs.nix>", "-I", f"input={FIXTURES}",
                    "--argstr", "suffix", "-h", "--arg", "extra", "2", "--gc-roots-dir", str(tmp_path / "roots"),
                    "--max-jobs", "1", "--meta", "--constituents", "--force-recurse", "--workers", "1",
                    "--max-memory-size", "4096", env=env)
    assert run.code == 0, run.stderr
    jobs = _hydra_reads(run.events)
    assert jobs["hello"]["name"] == "hello-h" and jobs["withExtra"]["name"] == "extra-2-h"
    assert "broken on purpose" in jobs["broken"]["error"]


def test_buildbot_nix(flake: Path, tmp_path: Path):
    run = eval_jobs("--option", "eval-cache", "false", "--workers", "2", "--max-memory-size", "2048",
                    "--option", "accept-flake-config", "true", "--gc-roots-dir", str(tmp_path / "roots"),
                    "--force-recurse", "--check-cache-status", "--show-trace", "--flake", f"{flake}#packages",
                    "--option", "substituters", "")
    assert run.code == 0, run.stderr
    success = {"attr", "attrPath", "drvPath", "name", "outputs", "system", "neededBuilds", "neededSubstitutes"}
    optional = {"cacheStatus", "inputDrvs", "isCached", "requiredSystemFeatures"}
    for job in run.events:  # its pydantic models: an error, or a success (extra fields are not fatal)
        assert set(job) == {"attr", "attrPath", "error"} or success <= set(job) <= success | optional, job
    assert {j["attr"] for j in run.events} == {"x86_64-linux.default", 'x86_64-linux."with.dot"'}
    assert all(j["cacheStatus"] == "notBuilt" and j["neededBuilds"] == [j["drvPath"]] for j in run.events)


def test_nix_fast_build_flake_and_file_modes(flake: Path, tmp_path: Path):
    common = ["--gc-roots-dir", str(tmp_path / "roots"), "--force-recurse", "--max-memory-size", "4096",
              "--workers", "2"]
    by_flake = eval_jobs(*common, "--flake", f"{flake}#hydraJobs", "--option", "eval-cache", "false")
    by_file = eval_jobs(*common, "--argstr", "suffix", "", "--include", f"fixtures={FIXTURES}",
                        "--select", "root: root.scope", str(FIXTURES / "jobs.nix"), "--check-cache-status",
                        "--option", "substituters", "")
    for run in (by_flake, by_file):
        assert run.code == 0, run.stderr
        for job in run.events:  # nix-fast-build: every line has an error or a drvPath
            assert "error" in job or ("drvPath" in job and job["outputs"] and job["system"])
    assert {j["attr"] for j in by_flake.events} == {"hello", "release", "tests.unit"}
    assert {j["attr"] for j in by_file.events} == {'"a.b"', "deeper.leaf", "inner"}
    assert all(j["cacheStatus"] in ("local", "cached", "notBuilt") for j in by_file.events)
