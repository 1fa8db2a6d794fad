"""--constituents (issue 12 item 4): direct, named, glob, missing, failing and cyclic
constituents, and the aggregate's .drv rewritten the way Nix itself accepts."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from eval_jobs_helpers import FIXTURES, FLAKES, drv_show, eval_jobs, nix_job
from evixd.engine import aggregates
from evix_helpers import nix_bin

AGGREGATES = FIXTURES / "aggregates.nix"
SOURCE = f"import {AGGREGATES}"
PLAIN = ["app", "broken", "direct", "lib", "noConstituents", "tests.integration", "tests.unit"]
HELD = ["cycleB", "cycleA", "failing", "glob", "missing", "named", "noMatch", "onCycle", "outer"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    roots = tmp_path_factory.mktemp("roots")
    result = eval_jobs("--constituents", "--gc-roots-dir", str(roots), str(AGGREGATES))
    assert result.code == 0, result.stderr
    result.roots = roots  # type: ignore[attr-defined]
    return result


def _drv(path: list[str]) -> str:
    return nix_job(SOURCE, path)["drvPath"]


def test_aggregates_naming_constituents_come_last_in_dependency_order(run):
    assert [j["attr"] for j in run.events] == PLAIN + HELD


def test_every_job_carries_the_constituent_fields(run):
    jobs = run.by_attr()
    assert jobs["app"]["constituents"] == [] and jobs["app"]["namedConstituents"] == []
    assert jobs["app"]["globConstituents"] is False
    assert jobs["direct"]["constituents"] == [_drv(["app"])] and jobs["direct"]["namedConstituents"] == []
    assert jobs["direct"]["drvPath"] == _drv(["direct"])  # nothing named: not rewritten
    assert all("namedConstituents" not in jobs[a] for a in HELD)
    assert "derivation must have a 'constituents' attribute" in jobs["noConstituents"]["error"]


@pytest.mark.parametrize("attr, error", [
    ("missing", "nope: does not exist\n"),
    ("noMatch", "nothing.*: constituent glob pattern had no matches\n"),
    ("cycleA", "Dependency cycle: cycleA <-> cycleB"),
    ("cycleB", "Dependency cycle: cycleA <-> cycleB"),
    ("onCycle", "cycleA: Dependency cycle: cycleA <-> cycleB\n"),
])
def test_errors_name_each_cause(run, attr: str, error: str):
    job = run.by_attr()[attr]
    assert job["error"] == error
    assert job["drvPath"] == _drv([attr]) and job["constituents"] == []  # kept as evaluated


def test_a_failing_constituent_gives_its_error(run):
    failing = run.by_attr()["failing"]
    broken = run.by_attr()["broken"]["error"]
    assert failing["error"] == f"broken: {broken}\n" and "broken constituent" in broken


def _check_rewrite(old: str, new: str, children: list[str]) -> None:
    """The new .drv is the old one plus the constituents (first output each) as inputs, with
    `out` recomputed; Nix accepts it as correct (`nix derivation add` recomputes the output)."""
    before, after = drv_show(old), drv_show(new)
    expected = {p: v["outputs"] for p, v in before["inputDrvs"].items()}
    for child in children:
        expected[child] = [sorted(drv_show(child)["outputs"])[0]]
    assert {p: v["outputs"] for p, v in after["inputDrvs"].items()} == expected
    assert {k: v for k, v in after["env"].items() if k != "out"} == {k: v for k, v in before["env"].items() if k != "out"}
    assert after["env"]["out"] == after["outputs"]["out"]["path"] != before["outputs"]["out"]["path"]
    added = subprocess.run([nix_bin("nix"), *FLAKES, "derivation", "add"], input=json.dumps(after), text=True,
                           capture_output=True, check=True)
    assert added.stdout.strip() == new


def test_named_and_glob_aggregates_are_rewritten(run):
    jobs = run.by_attr()
    # named: `app` is a derivation element (from the context), "lib" and "tests.unit" are names
    for attr, direct, children in (("named", ["app"], ["lib", "tests.unit"]),
                                   ("glob", [], ["tests.integration", "tests.unit"])):
        job = jobs[attr]
        child_drvs = [jobs[c]["drvPath"] for c in children]
        assert job["constituents"] == [jobs[d]["drvPath"] for d in direct] + child_drvs and "error" not in job
        _check_rewrite(_drv([attr]), job["drvPath"], child_drvs)
        assert job["outputs"] == {"out": drv_show(job["drvPath"])["outputs"]["out"]["path"]}
        assert os.readlink(run.roots / os.path.basename(job["drvPath"])) == job["drvPath"]


def test_an_aggregate_of_an_aggregate_uses_the_rewritten_drv(run):
    jobs = run.by_attr()
    outer = jobs["outer"]
    assert outer["constituents"] == [jobs["app"]["drvPath"], jobs["named"]["drvPath"]]
    assert jobs["named"]["drvPath"] != _drv(["named"])
    _check_rewrite(_drv(["outer"]), outer["drvPath"], outer["constituents"])


def test_without_constituents_aggregates_are_plain_jobs():
    plain = eval_jobs(str(AGGREGATES))
    assert plain.code == 0, plain.stderr
    named = plain.by_attr()["named"]
    assert "constituents" not in named and named["drvPath"] == _drv(["named"])


def test_ordering_and_cycles_in_isolation():
    res = [aggregates.Resolved("a", ["b"]), aggregates.Resolved("b", ["c"]), aggregates.Resolved("c", ["a"]),
           aggregates.Resolved("d", ["a", "e"]), aggregates.Resolved("e", []), aggregates.Resolved("f", ["f"])]
    ordered, cycles = aggregates.order(res)
    assert [r.name for r in ordered] == ["c", "b", "a", "e", "d", "f"]
    assert cycles == {n: "Dependency cycle: a <-> c" for n in "abc"}
    jobs = {"x.1": {"drvPath": "/1"}, "x.2": {"error": "bad"}, "y": {"drvPath": "/y"}}
    glob = aggregates.resolve({"attr": "y", "namedConstituents": ["x.*", "y*"], "globConstituents": True}, jobs)
    assert glob.children == ["x.1"] and glob.broken == {"x.2": "bad", "y*": "constituent glob pattern had no matches"}
