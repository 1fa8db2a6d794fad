"""`--override-flake ORIGINAL RESOLVED` and nested `--override-input a/b REF`, on local path
flakes, each run checked against what Nix's own `nix eval` computes with the same flags.

Nix applies `--override-flake` where it resolves an indirect reference: the flake reference
itself and references that are not locked yet (an `--override-input` one); an input already
locked in flake.lock keeps its lock. An empty global registry keeps both sides offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from eval_jobs_helpers import FLAKES, eval_jobs
from evix_helpers import eval_locally, nix_bin

MID = """{
  inputs.mydep.url = "mydep";
  outputs = { self, mydep }: { word = "mid-${mydep.word}"; };
}
"""
MAIN = """{
  inputs.mydep.url = "flake:mydep";
  inputs.mid.url = "path:%s";
  inputs.alias.follows = "mid/mydep";
  outputs = { self, mydep, mid, alias }:
    let mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; }; in {
      jobs = { a = mk "a-${mydep.word}"; b = mk "b-${mid.word}"; c = mk "c-${alias.word}"; };
    };
}
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """dep1..dep3 (words one..three); mid takes the indirect `mydep`; main takes `flake:mydep`,
    mid, and `alias` following mid's mydep; main is locked with mydep -> dep1."""
    root = tmp_path_factory.mktemp("overrides")
    (root / "registry.json").write_text('{"flakes": [], "version": 2}\n')
    for i, word in enumerate(("one", "two", "three"), 1):
        (root / f"dep{i}").mkdir()
        (root / f"dep{i}" / "flake.nix").write_text('{ outputs = { self }: { word = "%s"; }; }\n' % word)
    (root / "mid").mkdir()
    (root / "mid" / "flake.nix").write_text(MID)
    (root / "main").mkdir()
    (root / "main" / "flake.nix").write_text(MAIN % (root / "mid"))
    subprocess.run([nix_bin("nix"), *FLAKES, *_offline(root), "flake", "lock", "--override-flake", "mydep",
                    f"path:{root / 'dep1'}"], cwd=root / "main", check=True, capture_output=True)
    return root


def _offline(root: Path) -> list[str]:
    return ["--flake-registry", str(root / "registry.json")]


def _nix_jobs(root: Path, installable: str, *flags: str) -> dict[str, tuple[str, str]]:
    """{job: (name, drvPath)} as `nix eval` computes them with `flags`."""
    out = subprocess.run([nix_bin("nix"), *FLAKES, *_offline(root), "eval", "--json", installable, "--apply",
                          "builtins.mapAttrs (_: d: [ d.name d.drvPath ])", *flags],
                         capture_output=True, text=True, check=True, cwd=root)
    return {k: (v[0], v[1]) for k, v in json.loads(out.stdout).items()}


def _evix_jobs(root: Path, flake: str, *flags: str) -> dict[str, tuple[str, str]]:
    run = eval_jobs(*_offline(root), "--flake", flake, *flags, cwd=root)
    assert run.code == 0, run.stderr
    return {attr: (job["name"], job["drvPath"]) for attr, job in run.by_attr().items()}


def test_override_flake_redirects_an_indirect_flake_reference(tree: Path):
    flags = ("--override-flake", "flake:mainflake", f"path:{tree / 'main'}")
    truth = _nix_jobs(tree, "mainflake#jobs", *flags)
    assert [name for name, _ in truth.values()] == ["a-one", "b-mid-one", "c-one"]
    assert _evix_jobs(tree, "mainflake#jobs", *flags) == truth
    events = eval_locally("--option", "flake-registry", str(tree / "registry.json"), "--flake", "mainflake#jobs",
                          *flags, cwd=tree)  # evix eval takes it too
    assert events.code == 0, events.stderr
    assert {a: d["drvPath"] for a, d in events.derivations().items()} == {a: p for a, (_, p) in truth.items()}


def test_override_flake_keeps_inputs_locked_in_flake_lock(tree: Path):
    flags = ("--override-flake", "mydep", f"path:{tree / 'dep2'}")
    truth = _nix_jobs(tree, f"path:{tree / 'main'}#jobs", *flags)
    assert truth["a"][0] == "a-one"  # Nix resolves the registry only for what is not locked yet
    assert _evix_jobs(tree, f"path:{tree / 'main'}#jobs", *flags) == truth


def test_override_flake_resolves_an_override_input_reference(tree: Path):
    flags = ("--override-input", "mydep", "mydep", "--override-flake", "mydep", f"path:{tree / 'dep2'}")
    truth = _nix_jobs(tree, f"path:{tree / 'main'}#jobs", *flags)
    assert truth["a"][0] == "a-two" and truth["b"][0] == "b-mid-one"
    assert _evix_jobs(tree, f"path:{tree / 'main'}#jobs", *flags) == truth


def test_nested_override_input_reaches_the_input_and_what_follows_it(tree: Path):
    flags = ("--override-input", "mid/mydep", f"path:{tree / 'dep3'}")
    truth = _nix_jobs(tree, f"path:{tree / 'main'}#jobs", *flags)
    assert [name for name, _ in truth.values()] == ["a-one", "b-mid-three", "c-three"]
    assert _evix_jobs(tree, f"path:{tree / 'main'}#jobs", *flags) == truth
    both = (*flags, "--override-input", "mydep", f"path:{tree / 'dep2'}")
    truth = _nix_jobs(tree, f"path:{tree / 'main'}#jobs", *both)
    assert [name for name, _ in truth.values()] == ["a-two", "b-mid-three", "c-three"]
    assert _evix_jobs(tree, f"path:{tree / 'main'}#jobs", *both) == truth


def test_an_override_of_no_input_is_a_warning_as_in_nix(tree: Path):
    run = eval_jobs(*_offline(tree), "--flake", f"path:{tree / 'main'}#jobs", "--override-input", "mid/nope",
                    f"path:{tree / 'dep2'}", cwd=tree)
    assert run.code == 0, run.stderr
    assert f"warning: the flag '--override-input mid/nope path:{tree / 'dep2'}' does not match any input" in run.stderr
    assert run.by_attr()["b"]["name"] == "b-mid-one"


def test_override_flake_needs_a_flake(tree: Path):
    run = eval_jobs("--expr", "{ }", "--override-flake", "mydep", f"path:{tree / 'dep2'}", cwd=tree)
    assert run.code == 1 and "--override-flake only applies to --flake" in run.stderr
