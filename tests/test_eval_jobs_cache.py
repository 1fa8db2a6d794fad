"""--check-cache-status (issue 12 item 5) against a local file:// binary cache filled with
`nix copy`: each job's status, builds and substitutions, checked against what Nix itself
would do (`nix-store --realise --dry-run`), in the lines buildbot-nix and nix-fast-build parse."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest

from eval_jobs_helpers import FIXTURES, FLAKES, eval_jobs
from evix_helpers import eval_locally, nix_bin

CACHE_NIX = FIXTURES / "cache.nix"
EXPECTED = {"local": "local", "base": "cached", "onBase": "cached", "needsBase": "notBuilt", "fresh": "notBuilt",
            "onFresh": "notBuilt"}


def _nix(*args: str) -> str:
    return subprocess.run([*args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """(salt, cache URL): `local` built; `onBase` and `base` built, copied to the cache, deleted."""
    salt = uuid.uuid4().hex[:10]
    url = f"file://{tmp_path_factory.mktemp('binary-cache')}"
    build = [nix_bin("nix-build"), "--option", "sandbox", "false", "--no-out-link", str(CACHE_NIX), "--argstr", "salt", salt]
    _nix(*build, "-A", "local")
    on_base = _nix(*build, "-A", "onBase")
    base = _nix(nix_bin("nix-store"), "--query", "--references", on_base)
    _nix(nix_bin("nix"), *FLAKES, "copy", "--to", url, on_base)
    _nix(nix_bin("nix-store"), "--delete", on_base, base)
    assert not os.path.exists(on_base) and not os.path.exists(base)
    return salt, url


def _run(cache, *extra: str, env: dict[str, str] | None = None):
    salt, url = cache
    options = ("--option", "substituters", url) if env is None else ()
    run = eval_jobs("--check-cache-status", *options, *extra, str(CACHE_NIX), "--argstr", "salt", salt, env=env)
    assert run.code == 0, run.stderr
    return run


def _dry_run(drv: str, url: str) -> tuple[set[str], set[str]]:
    """(derivations Nix would build, paths it would fetch) to realise `drv`."""
    out = subprocess.run([nix_bin("nix-store"), "--realise", "--dry-run", "--option", "substituters", url, drv],
                         capture_output=True, text=True, check=True).stderr
    builds: set[str] = set()
    fetches: set[str] = set()
    target = None
    for line in out.splitlines():
        if re.match(r"(this derivation|these \d+ derivations) will be built", line):
            target = builds
        elif re.match(r"(this path|these \d+ paths) will be fetched", line):
            target = fetches
        elif line.startswith("  /nix/store/") and target is not None:
            target.add(line.strip())
    return builds, fetches


def test_each_job_has_the_status_nix_would_act_on(cache):
    jobs = _run(cache).by_attr()
    assert {a: j["cacheStatus"] for a, j in jobs.items()} == EXPECTED
    for attr, job in jobs.items():
        builds, fetches = _dry_run(job["drvPath"], cache[1])
        assert set(job["neededBuilds"]) == builds, attr
        assert set(job["neededSubstitutes"]) == fetches, attr
        assert job["isCached"] is (job["cacheStatus"] != "notBuilt")


def test_builds_come_dependencies_first_and_substitutes_sorted(cache):
    jobs = _run(cache).by_attr()
    assert jobs["onFresh"]["neededBuilds"] == [jobs["fresh"]["drvPath"], jobs["onFresh"]["drvPath"]]
    assert jobs["needsBase"]["neededBuilds"] == [jobs["needsBase"]["drvPath"]]
    assert jobs["needsBase"]["neededSubstitutes"] == [jobs["base"]["outputs"]["out"]]
    assert jobs["onBase"]["neededSubstitutes"] == [jobs["base"]["outputs"]["out"], jobs["onBase"]["outputs"]["out"]]
    assert jobs["local"]["neededBuilds"] == jobs["local"]["neededSubstitutes"] == []


def test_lines_fit_buildbot_nix_and_nix_fast_build(cache):
    for job in _run(cache, "--workers", "2").events:
        if "error" in job:
            assert set(job) == {"attr", "attrPath", "error"}
            continue
        # buildbot-nix's NixEvalJobSuccess: these are required, cacheStatus one of three
        assert {"attr", "attrPath", "drvPath", "name", "outputs", "system", "neededBuilds", "neededSubstitutes"} <= set(job)
        assert job["cacheStatus"] in ("cached", "local", "notBuilt")
        assert all(isinstance(v, str) or v is None for v in job["outputs"].values())
        # nix-fast-build --skip-cached: cacheStatus, else isCached
        assert isinstance(job["isCached"], bool)


def test_substituters_from_nix_config(cache):
    by_config = _run(cache, env={"NIX_CONFIG": f"substituters = {cache[1]}"})
    assert {a: j["cacheStatus"] for a, j in by_config.by_attr().items()} == EXPECTED


def test_an_unreachable_substituter_is_disabled_not_fatal(cache):
    salt, url = cache
    run = eval_jobs("--check-cache-status", "--option", "substituters", f"http://127.0.0.1:9 {url}",
                    str(CACHE_NIX), "--argstr", "salt", salt)
    assert run.code == 0, run.stderr
    assert "disabling binary cache 'http://127.0.0.1:9'" in run.stderr
    assert {a: j["cacheStatus"] for a, j in run.by_attr().items()} == EXPECTED


def test_evix_eval_reports_the_same_in_its_events(cache):
    salt, url = cache
    events = eval_locally("--file", str(CACHE_NIX), "--argstr", "salt", salt, "--check-cache-status",
                      "--option", "substituters", url)
    assert events.code == 0, events.stderr
    drvs = events.derivations()
    assert {a: d["cacheStatus"] for a, d in drvs.items()} == EXPECTED
    assert "isCached" not in drvs["local"]
    assert drvs["onFresh"]["neededBuilds"] == [drvs["fresh"]["drvPath"], drvs["onFresh"]["drvPath"]]


def test_the_daemon_takes_check_cache_status_in_its_config(cache):
    from daemon_fixtures import config_for, daemon_fixture, eval_lines

    salt, url = cache
    for daemon in daemon_fixture("--max-warm-workers", "1"):
        config = config_for(CACHE_NIX, args=[{"name": "salt", "value": salt, "isString": True}],
                            checkCacheStatus=True, options=[["substituters", url]])
        lines, summary = eval_lines(daemon, config)
        drvs = {d["attr"]: d for d in map(json.loads, lines) if "drvPath" in d}
        assert {a: d["cacheStatus"] for a, d in drvs.items()} == EXPECTED and summary["derivations"] == 6
        query = daemon.call("query", {"config": config})
        assert {d["attr"]: d["cacheStatus"] for d in query["derivations"]} == EXPECTED
