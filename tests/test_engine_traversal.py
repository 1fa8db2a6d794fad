"""The traversal's own rules end to end: functions at any depth are auto-called as
nix-eval-jobs does, and no set makes the traversal endless (cycles, the depth limit)."""

from __future__ import annotations

import pytest

from evix_helpers import FIXTURES, nix_bin
from evix_helpers import eval_locally
from nix_helpers import error_lines, nix_instantiate_all, run, without_warnings

FUNCTIONS = FIXTURES / "functions.nix"
CYCLES = FIXTURES / "cycles.nix"
ISSUE_CYCLE = """let s = { recurseForDerivations = true; inherit s;
  d = derivation { name = "d"; system = "x86_64-linux"; builder = "/bin/sh"; }; }; in { inherit s; }"""


def run_evix(*args: str):
    # A regression here is an endless traversal: a short timeout turns it into a failure.
    return eval_locally(*args, timeout=60)


def instantiate(attrs: list[str], *args: str, source=FUNCTIONS) -> dict[str, str]:
    """nix-instantiate's drvPath of each `-A attr` (it auto-calls along the path, like nix-eval-jobs)."""
    selections = [w for a in attrs for w in ("-A", a)]
    return dict(zip(attrs, nix_instantiate_all(source, *args, *selections), strict=True))


def instantiate_error(attr: str, *args: str) -> str:
    proc = run([nix_bin("nix-instantiate"), str(FUNCTIONS), *args, "-A", attr], check=False)
    assert proc.returncode != 0, proc.stdout
    return without_warnings(proc.stderr)


@pytest.fixture(scope="module")
def functions_run():
    result = run_evix("--file", str(FUNCTIONS), "--arg", "x", "5", "--argstr", "suffix", "-s", "--workers", "2")
    assert result.code == 0, result.stderr
    return result


def test_functions_below_the_root_are_called_like_nix_instantiate(functions_run):
    drvs = functions_run.derivations()
    called = ["defaulted", "scope.inner", "scope.fn", "scope.deeper.leaf", "needsX", "functor"]
    assert set(drvs) == set(called)
    truth = instantiate(called, "--arg", "x", "5", "--argstr", "suffix", "-s")
    for attr in called:
        assert drvs[attr]["drvPath"] == truth[attr], attr
    assert drvs["needsX"]["name"] == "needs-x-5-s" and drvs["functor"]["name"] == "functor-t-5-s"
    # a function's set is traversed by the usual rules: with recurseForDerivations only
    by_attr = functions_run.by_attr()
    assert by_attr["scope"]["attrs"] == ["deeper", "fn", "inner", "recurseForDerivations"]
    assert by_attr["scope.deeper"]["attrs"] == ["leaf", "recurseForDerivations"]
    assert not any(a.startswith("hiddenScope") for a in by_attr)
    # what stays a function once auto-called is skipped silently
    assert not {"plain", "builtin", "functorPlain"} & set(by_attr)


def test_a_function_that_cannot_be_called_is_nix_s_error(functions_run):
    errors = functions_run.errors()
    assert set(errors) == {"needsY", "needsYDots"}
    # no `...`: autoCallFunction's own message, as nix-instantiate prints it, position and all
    assert errors["needsY"]["error"] == instantiate_error("needsY", "--arg", "x", "5")
    assert "cannot evaluate a function that has an argument without a value ('y')" in errors["needsY"]["error"]
    # `...`: Nix's call error (its message and position; the call site has no position here)
    assert error_lines(errors["needsYDots"]["error"]) == error_lines(instantiate_error("needsYDots"))
    assert "called without required argument 'y'" in errors["needsYDots"]["error"]


def test_without_the_argument_the_function_is_an_error_and_the_rest_goes_on():
    result = run_evix("--file", str(FUNCTIONS))
    assert result.code == 0, result.stderr
    assert set(result.errors()) == {"needsX", "needsY", "needsYDots"}
    assert result.errors()["needsX"]["error"] == instantiate_error("needsX")
    assert {"defaulted", "functor", "scope.inner"} <= set(result.derivations())
    assert result.derivations()["functor"]["name"] == "functor-t-2"


def test_function_events_are_the_same_with_1_and_2_workers(functions_run):
    one = run_evix("--file", str(FUNCTIONS), "--arg", "x", "5", "--argstr", "suffix", "-s", "--workers", "1")
    assert one.code == 0, one.stderr
    assert one.canonical() == functions_run.canonical()


def test_a_set_that_contains_itself_is_one_error_event():
    result = run_evix("--expr", ISSUE_CYCLE)
    assert result.code == 0, result.stderr
    events = {e["attr"]: e for e in result.events}
    assert len(result.events) == 4 and set(events) == {"", "s", "s.d", "s.s"}
    assert events["s"]["attrs"] == ["d", "recurseForDerivations", "s"]
    assert events["s.s"] == {"attr": "s.s", "attrPath": ["s", "s"], "error": "attribute set cycle: s.s is s",
                             "fatal": False}
    truth = nix_instantiate_all(ISSUE_CYCLE, "-A", "s.d")
    assert events["s.d"]["drvPath"] == truth[0]


@pytest.fixture(scope="module")
def cycles_runs():
    runs = [run_evix("--file", str(CYCLES), "--max-depth", "6", "--workers", str(n)) for n in (1, 2)]
    for r in runs:
        assert r.code == 0, r.stderr
    return runs


def test_a_longer_cycle_is_cut_and_its_siblings_traversed(cycles_runs):
    result = cycles_runs[0]
    errors = result.errors()
    assert errors["a.b.a"]["error"] == "attribute set cycle: a.b.a is a"
    assert errors["s.s"]["error"] == "attribute set cycle: s.s is s"
    drvs = result.derivations()
    truth = instantiate(["a.b.leaf", "s.d", "sibling"], source=CYCLES)
    for attr, drv_path in truth.items():
        assert drvs[attr]["drvPath"] == drv_path
    assert not any(a.startswith(("a.b.a.", "s.s.")) for a in result.by_attr())


def test_fresh_sets_at_every_level_are_cut_at_the_depth_limit(cycles_runs):
    result = cycles_runs[0]
    assert max(len(e["attrPath"]) for e in result.events) == 6
    cut = "chain" + ".next" * 5
    assert result.errors()[cut]["error"] == (
        f"attribute set not traversed: {cut} is at the depth limit (--max-depth 6); its attributes would be deeper")
    chain = [a for a in result.derivations() if a.startswith("chain")]
    assert sorted(chain) == sorted("chain" + ".next" * i + ".d" for i in range(5))
    truth = instantiate(chain, source=CYCLES)
    for attr in chain:
        assert result.derivations()[attr]["drvPath"] == truth[attr]
    # a function that returns its own enclosing set makes a new value per call: depth cuts it
    assert "f" + ".again" * 5 in result.errors()
    # exactly: the two cycles and the two cuts
    assert len(result.errors()) == 4


def test_cycle_and_depth_events_are_the_same_with_1_and_2_workers(cycles_runs):
    assert cycles_runs[0].canonical() == cycles_runs[1].canonical()


def test_the_default_depth_limit_is_100():
    result = run_evix("--expr", f"(import {CYCLES}).chain")
    assert result.code == 0, result.stderr
    assert list(result.errors()) == ["next" * 1 + ".next" * 99]
    assert max(len(e["attrPath"]) for e in result.events) == 100
    assert len(result.derivations()) == 100


def test_max_depth_must_be_positive():
    result = run_evix("--expr", "{ }", "--max-depth", "0")
    assert result.code == 2 and "--max-depth" in result.stderr
