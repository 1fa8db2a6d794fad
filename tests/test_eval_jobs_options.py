"""--select, --apply and --no-instantiate (issue 12 items 3 and 7), in evix-eval-jobs' lines and
in evix's own events, against what the same Nix computes."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from eval_jobs_helpers import FIXTURES, eval_jobs, nix_job
from evix_helpers import eval_locally, nix_bin

JOBS = FIXTURES / "jobs.nix"
APPLY = "drv: { inherit (drv) name; out = drv; n = 1; tags = [ drv.system ]; }"


def test_apply_puts_the_functions_json_in_extra_value():
    run = eval_jobs("--apply", APPLY, str(JOBS))
    assert run.code == 0, run.stderr
    hello = run.by_attr()["hello"]
    truth = nix_job(f"import {JOBS} {{ }}", ["hello"])
    assert hello["extraValue"] == {"name": "hello", "out": truth["outputs"]["out"], "n": 1, "tags": ["x86_64-linux"]}
    assert all("extraValue" in j for j in run.events if "drvPath" in j)
    events = eval_locally("--file", str(JOBS), "--apply", APPLY)
    assert events.code == 0, events.stderr
    assert events.derivations()["hello"]["extraValue"] == hello["extraValue"]


@pytest.mark.parametrize("apply, words", [
    ("drv: drv.name", "--apply must evaluate to an attribute set, not a string"),
    ("drv: { f = x: x; }", "cannot convert a function to JSON"),
    ("drv: { bad = throw \"apply failed\"; }", "apply failed"),
])
def test_apply_failures_are_the_jobs_errors(apply: str, words: str):
    run = eval_jobs("--apply", apply, str(JOBS))
    assert run.code == 0, run.stderr
    hello = run.by_attr()["hello"]
    assert set(hello) == {"attr", "attrPath", "error"} and words in hello["error"]


def test_apply_that_does_not_parse_fails_the_run():
    run = eval_jobs("--apply", "drv: {", str(JOBS))
    assert run.code == 1 and "--apply" in run.stderr and "syntax error" in run.stderr


def test_select_on_a_file_root():
    run = eval_jobs("--select", "root: root.scope", "--argstr", "suffix", "-s", str(JOBS))
    assert run.code == 0, run.stderr
    assert [j["attr"] for j in run.events] == ['"a.b"', "deeper.leaf", "inner"]
    assert run.by_attr()["inner"]["drvPath"] == nix_job(f'import {JOBS} {{ suffix = "-s"; }}', ["scope", "inner"])["drvPath"]
    events = eval_locally("--file", str(JOBS), "--select", "root: root.scope")
    assert events.code == 0, events.stderr
    assert set(events.derivations()) == {'"a.b"', "deeper.leaf", "inner"}


def _fresh(tmp_path: Path) -> tuple[Path, str]:
    """A file whose derivation and source were never instantiated on this machine."""
    tag = uuid.uuid4().hex[:12]
    (tmp_path / "data.txt").write_text(tag)
    f = tmp_path / "fresh.nix"
    f.write_text(
        "let mk = name: derivation { inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; src = ./data.txt; "
        "requiredSystemFeatures = [ \"kvm\" ]; }; in\n"
        f'{{ fresh = mk "fresh-{tag}"; nested = {{ recurseForDerivations = true; leaf = mk "leaf-{tag}"; }}; }}\n')
    return f, tag


def _read_only_truth(f: Path, attr: str) -> dict:
    expr = f"let d = (import {f}).{attr}; in {{ inherit (d) drvPath; out = d.outPath; src = \"${{d.src}}\"; }}"
    out = subprocess.run([nix_bin("nix-instantiate"), "--eval", "--strict", "--json", "--expr", expr],
                         capture_output=True, text=True, check=True)  # --eval: Nix's read-only mode
    return json.loads(out.stdout)


def test_no_instantiate_computes_paths_without_writing_them(tmp_path: Path):
    f, tag = _fresh(tmp_path)
    roots = tmp_path / "roots"
    run = eval_jobs("--no-instantiate", "--gc-roots-dir", str(roots), str(f))
    assert run.code == 0, run.stderr
    jobs = run.by_attr()
    for attr in ("fresh", "nested.leaf"):
        truth = _read_only_truth(f, attr)
        job = jobs[attr]
        assert job["drvPath"] == truth["drvPath"] and job["outputs"] == {"out": truth["out"]}
        assert set(job) == {"attr", "attrPath", "name", "system", "drvPath", "outputs"}  # no requiredSystemFeatures
        assert not os.path.exists(job["drvPath"])
        assert not os.path.exists(truth["src"])  # the source was not copied either
    assert not roots.exists() or not list(roots.iterdir())
    events = eval_locally("--file", str(f), "--no-instantiate")
    assert events.code == 0, events.stderr
    assert events.derivations()["fresh"]["drvPath"] == jobs["fresh"]["drvPath"]
    assert not os.path.exists(jobs["fresh"]["drvPath"])
    written = eval_jobs(str(f))  # and without it, the same paths, written
    assert written.by_attr()["fresh"]["drvPath"] == jobs["fresh"]["drvPath"]
    assert os.path.exists(jobs["fresh"]["drvPath"]) and written.by_attr()["fresh"]["requiredSystemFeatures"] == ["kvm"]


@pytest.mark.parametrize("flag", ["--show-input-drvs", "--check-cache-status", "--constituents"])
def test_no_instantiate_with_what_needs_the_drv_is_a_usage_error(flag: str):
    run = eval_jobs("--no-instantiate", flag, str(JOBS))
    assert run.code == 1 and f"--no-instantiate cannot be combined with {flag}" in run.stderr and run.stdout == b""


def test_show_input_drvs_lists_the_drvs_inputs(tmp_path: Path):
    f = tmp_path / "deps.nix"
    f.write_text("let mk = name: attrs: derivation ({ inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; } // attrs);\n"
                 "    dep = mk \"dep\" { outputs = [ \"out\" \"dev\" ]; }; in\n"
                 "{ app = mk \"app\" { deps = [ dep.dev dep.out ]; }; }\n")
    run = eval_jobs("--show-input-drvs", str(f))
    assert run.code == 0, run.stderr
    app = run.by_attr()["app"]
    shown = subprocess.run([nix_bin("nix"), "--extra-experimental-features", "nix-command", "derivation", "show",
                            app["drvPath"]], capture_output=True, text=True, check=True)
    inputs = json.loads(shown.stdout)[app["drvPath"]]["inputDrvs"]
    assert app["inputDrvs"] == {p: sorted(v["outputs"]) for p, v in inputs.items()}


def test_library_events_carry_the_new_fields():
    from protocol.events import Derivation, event_from_json

    event = event_from_json({"attr": "a", "attrPath": ["a"], "name": "a", "system": "x", "drvPath": "/d",
                             "outputs": {}, "extraValue": {"n": 1}, "requiredSystemFeatures": ["kvm"],
                             "cacheStatus": "local", "neededBuilds": [], "neededSubstitutes": [],
                             "metaError": {"path": "", "message": "m"}})
    assert isinstance(event, Derivation)
    assert (event.extra_value, event.required_system_features, event.cache_status) == ({"n": 1}, ["kvm"], "local")
    assert event.meta_error == {"path": "", "message": "m"}
