"""`evix-eval-jobs`: nix-eval-jobs' command line and output, on real Nix (issue 12, items 1, 2, 6;
issue 15 item 2). Every line is checked against what the same Nix computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_jobs_helpers import FIXTURES, eval_jobs, line, nix_job, required_features
from evix_helpers import FIXTURES as ENGINE_FIXTURES

JOBS = FIXTURES / "jobs.nix"
SOURCE = f"import {JOBS} {{ }}"
ORDER = [["0ad"], ["broken"], ["dotted.name"], ["gtk+"], ["hello"], ["kvm"], ["multi"], ["scope", "a.b"],
         ["scope", "deeper", "leaf"], ["scope", "inner"], ["withExtra"]]
NAMES = {("0ad",): "0ad", ("dotted.name",): '"dotted.name"', ("gtk+",): "gtk+", ("scope", "a.b"): 'scope."a.b"',
         ("scope", "deeper", "leaf"): "scope.deeper.leaf"}


@pytest.fixture(scope="module")
def one_worker():
    run = eval_jobs(str(JOBS))
    assert run.code == 0, run.stderr
    return run


def _expected(path: list[str], **extra) -> dict:
    truth = nix_job(SOURCE, path)
    job = {"attr": NAMES.get(tuple(path), ".".join(path)), "attrPath": path, **truth,
           "requiredSystemFeatures": required_features(truth["drvPath"])}
    job.update(extra)
    return job


def test_every_line_is_exactly_what_nix_eval_jobs_prints(one_worker):
    lines = one_worker.stdout.splitlines(keepends=True)
    assert [json.loads(x)["attrPath"] for x in lines] == ORDER  # ascending attrPath, one worker
    for raw in lines:
        job = json.loads(raw)
        if job["attrPath"] == ["broken"]:
            assert set(job) == {"attr", "attrPath", "error"} and "broken on purpose" in job["error"]
            assert raw == line(job)
            continue
        assert raw == line(_expected(job["attrPath"])), job["attr"]


def test_no_attrset_lines_and_sets_follow_recurse_for_derivations(one_worker):
    attrs = [j["attr"] for j in one_worker.events]
    assert not any(a in ("", "scope", "scope.deeper", "hidden") for a in attrs)
    assert all("drvPath" in j or "error" in j for j in one_worker.events)
    assert "hidden.secret" not in attrs and "number" not in attrs


def test_system_features_come_from_the_drv(one_worker):
    kvm = one_worker.by_attr()["kvm"]
    assert kvm["requiredSystemFeatures"] == ["kvm", "nixos-test"] == required_features(kvm["drvPath"])


def test_force_recurse_and_arguments(tmp_path: Path):
    run = eval_jobs("--force-recurse", "--argstr", "suffix", "-x", "--arg", "extra", "1 + 2", str(JOBS), "--workers", "2")
    assert run.code == 0, run.stderr
    jobs = run.by_attr()
    assert jobs["hidden.secret"]["name"] == "secret-x"
    assert jobs["withExtra"]["drvPath"] == nix_job(f'import {JOBS} {{ suffix = "-x"; extra = 3; }}', ["withExtra"])["drvPath"]
    assert set(jobs) > {"hello", "scope.inner", "hidden.secret"}


def test_expr_and_lookup_path_inputs(one_worker):
    by_expr = eval_jobs("-E", f"import {JOBS} {{ }}")
    expr_after = eval_jobs(f"import {JOBS} {{ }}", "--expr")
    lookup = eval_jobs("-I", f"fixtures={FIXTURES}", "<fixtures/jobs.nix>")
    include = eval_jobs("--include", f"fixtures={FIXTURES}", "<fixtures/jobs.nix>")
    for run in (by_expr, expr_after, lookup, include):
        assert run.code == 0, run.stderr
        assert run.stdout == one_worker.stdout


def test_nix_settings_as_flags_and_unknown_options_warn():
    run = eval_jobs("--max-jobs", "1", "--extra-experimental-features", "nix-command flakes", "--option",
                    "eval-cache", "false", "--option", "no-such-setting", "x", "--no-allow-import-from-derivation",
                    "--show-trace", str(JOBS))
    assert run.code == 0, run.stderr
    assert "warning: unknown setting 'no-such-setting'" in run.stderr
    assert len(run.events) == len(ORDER)


def test_usage_and_load_errors_exit_1():
    usage = eval_jobs("--no-such-flag", str(JOBS))
    assert usage.code == 1 and "error: unrecognized arguments: --no-such-flag" in usage.stderr
    assert eval_jobs().code == 1
    missing = eval_jobs("/nonexistent/release.nix")
    assert missing.code == 1 and "no such file" in missing.stderr and missing.stdout == b""
    syntax = eval_jobs("-E", "{ a = ; }")
    assert syntax.code == 1 and "syntax error" in syntax.stderr


def test_error_messages_reach_stderr_only_with_verbose(one_worker):
    assert "broken on purpose" not in one_worker.stderr
    verbose = eval_jobs("-v", str(JOBS))
    assert "broken on purpose" in verbose.stderr and "'broken'" in verbose.stderr


def test_nix_warnings_pass_through_unprefixed(tmp_path: Path):
    f = tmp_path / "warn.nix"
    f.write_text('{ a = builtins.warn "careful\\nsecond line" (derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; }); }')
    run = eval_jobs("--option", "abort-on-warn", "false", str(f))
    assert run.code == 0, run.stderr
    assert "\nevaluation warning: careful\n" in "\n" + run.stderr
    assert "evix" not in run.stderr


def test_a_worker_that_dies_fails_the_run_after_the_others(tmp_path: Path):
    f = tmp_path / "crash.nix"
    f.write_text(
        "let mk = name: derivation { inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; };\n"
        "    nest = n: if n == 0 then [ ] else [ (nest (n - 1)) ]; in\n"
        '{ a = mk "a"; overflow = builtins.deepSeq (nest 2000000) (mk "never"); z = mk "z"; }\n')
    run = eval_jobs(str(f))
    assert run.code == 1
    assert [j["attr"] for j in run.events] == ["a", "overflow", "z"]
    assert set(run.by_attr()["overflow"]) == {"attr", "attrPath", "error"}
    assert "error: worker died evaluating 'overflow'" in run.stderr
    assert "possible infinite recursion" in run.stderr


def test_meta_as_nix_eval_jobs_reads_it(tmp_path: Path):
    run = eval_jobs("--meta", str(JOBS))
    assert run.code == 0, run.stderr
    hello = run.by_attr()["hello"]
    assert hello["meta"] == {  # null and the like are left out, as PackageInfo::queryMeta does
        "description": "Hello", "license": [{"shortName": "gpl3Plus"}], "homepage": "https://example.org/hello",
        "maintainers": [{"email": "alice@example.org", "name": "Alice"}], "maxSilent": 60, "timeout": 120,
        "schedulingPriority": 50, "isChannel": False, "outputsToInstall": ["out"]}
    assert run.by_attr()["0ad"]["meta"] is None


def test_a_meta_that_fails_is_an_error_line():
    run = eval_jobs("--meta", str(ENGINE_FIXTURES / "meta_errors.nix"))
    assert run.code == 0, run.stderr
    jobs = run.by_attr()
    for attr, words in (("missingMaintainer", "error: attribute 'GaetanLepage' missing"),
                        ("throwingDescription", "error: no description for you")):
        assert set(jobs[attr]) == {"attr", "attrPath", "error"}, attr
        assert words in jobs[attr]["error"]
    assert jobs["functionInMeta"]["meta"] == {"description": "has a function", "platforms": ["x86_64-linux"]}
    assert jobs["fineMeta"]["meta"]["maintainers"] == [{"email": "alice@example.org", "name": "Alice"}]
    assert jobs["fineMeta"]["drvPath"] == nix_job(f"import {ENGINE_FIXTURES / 'meta_errors.nix'}", ["fineMeta"])["drvPath"]


def test_evix_eval_jobs_subcommand_is_the_same(one_worker):
    import subprocess
    import sys

    from evix_helpers import REPO

    out = subprocess.run([sys.executable, "-m", "evix_client", "eval-jobs", str(JOBS)], capture_output=True,
                         cwd=REPO, check=True)
    assert out.stdout == one_worker.stdout


def test_arguments_from_a_file_and_stdin_and_an_eval_store(tmp_path: Path):
    f = tmp_path / "arg.nix"
    f.write_text('{ x }: { a = derivation { name = x; system = "x86_64-linux"; builder = "/bin/sh"; }; }')
    (tmp_path / "value").write_text("from-file")
    by_file = eval_jobs(str(f), "--arg-from-file", "x", str(tmp_path / "value"), "--debug", "--log-format", "bar")
    by_stdin = eval_jobs(str(f), "--arg-from-stdin", "x", "--quiet", stdin="from-stdin")
    for run, name in ((by_file, "from-file"), (by_stdin, "from-stdin")):
        assert run.code == 0, run.stderr
        job = run.by_attr()["a"]
        assert job["name"] == name and job["drvPath"] == nix_job(f'import {f} {{ x = "{name}"; }}', ["a"])["drvPath"]
    store = tmp_path / "chroot"
    unique = f"eval-store-{tmp_path.name}"
    run = eval_jobs("--eval-store", f"local?root={store}", "-E",
                    f'{{ a = derivation {{ name = "{unique}"; system = "x86_64-linux"; builder = "/bin/sh"; }}; }}')
    assert run.code == 0, run.stderr
    drv = run.by_attr()["a"]["drvPath"]
    assert (store / drv.lstrip("/")).exists() and not Path(drv).exists()
