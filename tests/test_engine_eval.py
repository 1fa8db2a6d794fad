"""`evix eval` end to end against real Nix: drvPaths, traversal, options, names, outputs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from evix_helpers import FIXTURES, eval_locally, nix_bin, nix_drv_paths, start_evix

JOBS = FIXTURES / "jobs.nix"


@pytest.fixture(scope="module")
def jobs_run():
    run = eval_locally("--file", str(JOBS), "--workers", "2")
    assert run.code == 0, run.stderr
    return run


def test_every_drv_path_equals_nix_instantiate(jobs_run):
    drvs = jobs_run.derivations()
    assert len(drvs) >= 10
    truth = nix_drv_paths(f"import {JOBS} {{ }}", [e["attrPath"] for e in drvs.values()])
    for attr, event in drvs.items():
        assert event["drvPath"] == truth[".".join(event["attrPath"])], attr


def test_traversal_follows_recurse_for_derivations(jobs_run):
    drvs = jobs_run.derivations()
    assert {"scope.inner", "scope.deeper.leaf"} <= set(drvs)
    # not marked for recursion: neither traversed nor reported
    assert not any(a.startswith(("hidden", "scope.notRecursed")) for a in jobs_run.by_attr())
    # non-derivation leaves are skipped silently
    assert not {"number", "nothing", "fun"} & set(jobs_run.by_attr())
    root = jobs_run.by_attr()[""]
    assert root["attrs"] == sorted(root["attrs"]) and "hidden" in root["attrs"]
    assert jobs_run.by_attr()["scope"]["attrs"] == ["deeper", "inner", "notRecursed", "recurseForDerivations"]


def test_force_recurse_expands_every_attrset():
    run = eval_locally("--file", str(JOBS), "--force-recurse")
    assert run.code == 0, run.stderr
    drvs = run.derivations()
    assert {"hidden.secret", "scope.notRecursed.hiddenLeaf"} <= set(drvs)
    # derivations themselves are not traversed
    assert not any(a.startswith("base.") for a in run.by_attr())


def test_odd_names_are_quoted_unambiguously(jobs_run):
    drvs = jobs_run.derivations()
    expected = {
        'names."dotted.name"': ["names", "dotted.name"],
        'names."with space"': ["names", "with space"],
        'names."ünïcödé"': ["names", "ünïcödé"],
        'names."if"': ["names", "if"],
    }
    for attr, path in expected.items():
        assert drvs[attr]["attrPath"] == path
    truth = nix_drv_paths(f"import {JOBS} {{ }}", list(expected.values()))
    for attr, path in expected.items():
        assert drvs[attr]["drvPath"] == truth[".".join(path)]


def test_multiple_outputs(jobs_run):
    drvs = jobs_run.derivations()
    multi = drvs["multi"]
    assert set(multi["outputs"]) == {"out", "dev", "man"}
    out = subprocess.run(
        [nix_bin("nix-instantiate"), "--eval", "--strict", "--json", "--expr",
         f"let m = (import {JOBS} {{ }}).multi; in {{ out = m.out.outPath; dev = m.dev.outPath; man = m.man.outPath; }}"],
        capture_output=True, text=True, check=True,
    )
    assert multi["outputs"] == json.loads(out.stdout)


def test_string_context_makes_the_inputs_of_a_derivation(jobs_run):
    """`app` refers to base and multi.dev only through strings ("${base}/bin/run", deps):
    their context is what makes them inputs, and so part of app's drvPath."""
    drvs = jobs_run.derivations()
    app = drvs["app"]
    assert app["name"] == "app" and app["system"] == "x86_64-linux"
    strip = "x: builtins.unsafeDiscardStringContext (toString x)"
    without_context = (f"let a = (import {JOBS} {{ }}).app.drvAttrs; strip = {strip}; in "
                       "{ app = derivation (a // { deps = map strip a.deps; script = strip a.script; }); }")
    truth = nix_drv_paths(f"import {JOBS} {{ }}", [["app"]])["app"]
    context_free = nix_drv_paths(without_context, [["app"]])["app"]
    assert app["drvPath"] == truth != context_free  # the same strings without context: another drv
    inputs = subprocess.run([nix_bin("nix-store"), "--query", "--references", app["drvPath"]],
                            capture_output=True, text=True, check=True).stdout.split()
    assert {drvs["base"]["drvPath"], drvs["multi"]["drvPath"]} <= set(inputs)


def test_aggregate_constituents(jobs_run):
    agg = jobs_run.derivations()["aggregate"]
    drvs = jobs_run.derivations()
    assert agg["constituents"] == [drvs["base"]["drvPath"], drvs["multi"]["drvPath"], "scope.inner"]
    assert "constituents" not in drvs["base"]


def test_same_events_with_1_2_and_4_workers():
    runs = [eval_locally("--file", str(JOBS), "--workers", str(n)) for n in (1, 2, 4)]
    for run in runs:
        assert run.code == 0, run.stderr
    assert runs[0].canonical() == runs[1].canonical() == runs[2].canonical()
    broken = [eval_locally("--file", str(FIXTURES / "broken.nix"), "--workers", str(n)) for n in (1, 3)]
    assert broken[0].canonical() == broken[1].canonical()


def test_arg_and_argstr_auto_call_the_root():
    run = eval_locally("--file", str(JOBS), "--argstr", "suffix", "-x", "--arg", "extra", "1 + 2")
    assert run.code == 0, run.stderr
    drvs = run.derivations()
    assert drvs["base"]["name"] == "base-x"
    assert "withExtra" in drvs and drvs["withExtra"]["name"] == "extra-3-x"
    truth = nix_drv_paths(f'import {JOBS} {{ suffix = "-x"; extra = 3; }}', [["base"], ["withExtra"]])
    assert drvs["base"]["drvPath"] == truth["base"]
    assert drvs["withExtra"]["drvPath"] == truth["withExtra"]
    cli = subprocess.run(
        [nix_bin("nix-instantiate"), str(JOBS), "-A", "withExtra", "--argstr", "suffix", "-x", "--arg", "extra", "1 + 2"],
        capture_output=True, text=True, check=True,
    )
    assert cli.stdout.strip() == drvs["withExtra"]["drvPath"]


def test_expr_with_relative_import(tmp_path: Path):
    (tmp_path / "sub.nix").write_text('derivation { name = "rel"; system = "x86_64-linux"; builder = "/bin/sh"; }')
    run = eval_locally("--expr", "{ rel = import ./sub.nix; }", cwd=tmp_path)
    assert run.code == 0, run.stderr
    truth = nix_drv_paths(f"{{ rel = import {tmp_path}/sub.nix; }}", [["rel"]])
    assert run.derivations()["rel"]["drvPath"] == truth["rel"]


def test_meta_is_json_and_bad_parts_are_left_out():
    run = eval_locally("--file", str(FIXTURES / "broken.nix"), "--meta")
    assert run.code == 0
    bad = run.derivations()["badMeta"]
    assert bad["meta"] == {"description": "kept"}
    jobs = eval_locally("--file", str(JOBS), "--meta").derivations()
    assert jobs["app"]["meta"] == {"description": "app", "license": {"spdx": "MIT"}, "homepage": None}
    assert "meta" not in eval_locally("--file", str(JOBS)).derivations()["app"]


def test_show_input_drvs_reads_the_drv_file(jobs_run):
    run = eval_locally("--file", str(JOBS), "--show-input-drvs")
    drvs = run.derivations()
    app = drvs["app"]
    assert app["inputDrvs"] == {drvs["base"]["drvPath"]: ["out"], drvs["multi"]["drvPath"]: ["dev"]}
    assert drvs["base"]["inputDrvs"] == {}
    shown = subprocess.run([nix_bin("nix-store"), "--query", "--references", app["drvPath"]],
                           capture_output=True, text=True, check=True).stdout.split()
    assert set(app["inputDrvs"]) <= set(shown)


def test_gc_roots_dir_roots_every_derivation(tmp_path: Path):
    roots = tmp_path / "roots"
    roots.mkdir()
    run = eval_locally("--file", str(JOBS), "--gc-roots-dir", str(roots))
    assert run.code == 0, run.stderr
    for event in run.derivations().values():
        link = roots / os.path.basename(event["drvPath"])
        assert os.readlink(link) == event["drvPath"]
    some = run.derivations()["base"]["drvPath"]
    listed = subprocess.run([nix_bin("nix-store"), "--query", "--roots", some], capture_output=True, text=True, check=True)
    assert str(roots / os.path.basename(some)) in listed.stdout


def test_option_sets_a_nix_setting_in_every_worker():
    expr = '{ a = derivation { name = "a"; system = builtins.currentSystem; builder = "/bin/sh"; }; }'
    run = eval_locally("--expr", expr, "--option", "system", "aarch64-linux", "--workers", "2")
    assert run.code == 0, run.stderr
    assert run.derivations()["a"]["system"] == "aarch64-linux"
    # an evaluator setting (not reachable through nix_setting_set in 2.26)
    deep = "{ a = let f = n: if n == 0 then 0 else 1 + f (n - 1); in derivation { name = \"d${toString (f 500)}\"; system = \"x\"; builder = \"/bin/sh\"; }; }"
    assert "a" in eval_locally("--expr", deep).derivations()
    limited = eval_locally("--expr", deep, "--option", "max-call-depth", "100")
    assert "max-call-depth" in limited.errors()["a"]["error"]


def test_unknown_option_is_a_clear_fatal_error():
    run = eval_locally("--expr", "{ }", "--option", "no-such-setting", "1")
    assert run.code == 1
    assert "no-such-setting" in run.stderr and "unknown Nix setting" in run.stderr
    assert "Traceback" not in run.stderr


def test_lookup_path_from_dash_i_and_nix_path(tmp_path: Path):
    (tmp_path / "lib.nix").write_text('derivation { name = "from-lookup"; system = "x"; builder = "/bin/sh"; }')
    run = eval_locally("--expr", "{ a = import <mine/lib.nix>; }", "-I", f"mine={tmp_path}")
    assert run.derivations()["a"]["name"] == "from-lookup"
    run = eval_locally("--expr", "{ a = import <mine/lib.nix>; }", env={"NIX_PATH": f"mine={tmp_path}"})
    assert run.derivations()["a"]["name"] == "from-lookup"


def test_usage_errors_are_clear():
    both = eval_locally("--expr", "{}", "--file", "x.nix")
    assert both.code == 2 and "not allowed with argument" in both.stderr
    missing = eval_locally("--file", "/nonexistent/x.nix")
    assert missing.code == 1 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    syntax = eval_locally("--expr", "{ a = ; }")
    assert syntax.code == 1 and "syntax error" in syntax.stderr


def test_progress_line_only_on_a_terminal():
    import pty

    # long enough (~0.5 s) for a few refreshes of the line
    many = ('builtins.listToAttrs (builtins.genList (i: { name = "d${toString i}"; value = derivation '
            '{ name = "p${toString i}"; system = "x"; builder = "/bin/sh"; }; }) 15000)')
    master, slave = pty.openpty()
    proc = start_evix("eval", "--no-daemon", "--expr", many, stderr=slave)
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"evix: " in seen and b"derivations" in seen and b"errors" in seen
    assert b"\r" in seen  # one line, rewritten in place
    assert b"derivations," not in out  # never on stdout
    assert "derivations," not in eval_locally("--file", str(FIXTURES / "broken.nix")).stderr


def test_verbosity_flags_and_the_env_override():
    quiet = eval_locally("--file", str(JOBS))
    assert "derivations," not in quiet.stderr  # warnings only by default
    verbose = eval_locally("--file", str(JOBS), "-v")
    assert "derivations, 0 errors in" in verbose.stderr
    silenced = eval_locally("--file", str(FIXTURES / "broken.nix"), "-v", env={"EVIX_LOG": "off"})
    assert silenced.stderr == "" and silenced.errors()  # events unaffected
    forced = eval_locally("--file", str(JOBS), "-q", "-q", env={"EVIX_LOG": "info"})
    assert "derivations, 0 errors in" in forced.stderr


def test_an_unusable_gc_roots_dir_is_one_clear_fatal_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = eval_locally("--file", str(JOBS), "--gc-roots-dir", str(blocker / "roots"))
    assert run.code == 1 and run.events == []
    assert f"--gc-roots-dir {blocker / 'roots'}: Not a directory" in run.stderr
    assert "worker exited" not in run.stderr and "Traceback" not in run.stderr
