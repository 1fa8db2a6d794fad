"""A local input the remote machine cannot see: the master ships its tree (once, by content
hash) and the remote evaluates it to the drvPaths the master's own Nix computes. The remote
runs in its own mount namespace, where the input's directory is hidden under a tmpfs."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
import trio

from evix_helpers import Run, command, eval_locally, evix_env, wait_until
from evixd.engine.remote_sources import ShippedSource
from evixd.remote_service import sources
from evixd.remote_service.sources import SAME_HERE_ENTRIES, SourceCache
from nix_helpers import nix_instantiate_all
from remote_helpers import listen_args, remote_env, services

SOURCE = """
let
  lib = import ./lib.nix;
in {
  data = lib.mk "data" { src = ./data.txt; };
  tree = lib.mk "tree" { src = ./.; };
  nested = { recurseForDerivations = true; leaf = lib.mk "leaf" { src = ./sub/leaf.txt; }; };
}
"""


def _project(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "default.nix").write_text(SOURCE)
    (root / "lib.nix").write_text('{ mk = name: attrs: derivation ({ inherit name; system = "x86_64-linux"; '
                                  'builder = "/bin/sh"; } // attrs); }\n')
    (root / "data.txt").write_text("some data\n")
    (root / "sub" / "leaf.txt").write_text("a leaf\n")
    return root / "default.nix"


def test_an_input_the_remote_cannot_see_is_shipped_and_gives_the_same_drv_paths(tmp_path: Path):
    project = tmp_path / "project"
    entry = _project(project)
    truth = nix_instantiate_all(entry, "-A", "data", "-A", "tree", "-A", "nested.leaf")
    cache = tmp_path / "cache"
    hide = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(project)]
    with services(listen_args(cache=cache), prefix=hide) as (service,):
        run = eval_locally("--file", str(entry), "--workers", "0", "--remote", service.endpoint, "", "2",
                           env=remote_env())
        again = eval_locally("--file", str(entry), "--workers", "0", "--remote", service.endpoint, "", "1",
                             env=remote_env())
        shutil.rmtree(next(cache.glob("*/project")))  # the tree gone from under its mark: shipped again
        third = eval_locally("--file", str(entry), "--workers", "0", "--remote", service.endpoint, "", "1",
                             env=remote_env())
    assert run.code == 0, run.stderr + service.log
    drvs = run.derivations()
    assert [drvs[a]["drvPath"] for a in ("data", "tree", "nested.leaf")] == truth
    assert again.code == 0 and again.canonical() == run.canonical()
    assert third.code == 0 and third.canonical() == run.canonical(), third.stderr
    shipped = [p for p in cache.iterdir() if (p / ".complete").exists()]
    assert len(shipped) == 1 and (shipped[0] / "project" / "sub" / "leaf.txt").read_text() == "a leaf\n"


def test_a_remote_flake_reference_reaches_the_remote_locked(tmp_path: Path):
    flake = tmp_path / "src" / "flake"
    flake.mkdir(parents=True)
    (flake / "flake.nix").write_text('{ outputs = { self }: { jobs = { a = derivation { name = "a"; '
                                     'system = "x86_64-linux"; builder = "/bin/sh"; src = ./flake.nix; }; }; }; }\n')
    archive = tmp_path / "flake.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(flake.parent), "flake"], check=True, timeout=30)
    ref = f"tarball+file://{archive}"
    local = eval_locally("--flake", f"{ref}#jobs")
    assert local.code == 0, local.stderr
    with services(listen_args()) as (service,):
        run = eval_locally("--flake", f"{ref}#jobs", "--workers", "0", "--remote", service.endpoint, "", "1",
                           env=remote_env())
    assert run.code == 0, run.stderr
    assert run.canonical() == local.canonical()
    served = re.search(r"serving --flake (\S+)", service.log)
    assert served and "narHash=sha256-" in served.group(1), service.log


def test_a_local_flake_the_remote_cannot_see_is_shipped(tmp_path: Path):
    flake = tmp_path / "hidden" / "myflake"
    flake.mkdir(parents=True)
    (flake / "data.txt").write_text("flake data\n")
    (flake / "flake.nix").write_text('{ outputs = { self }: { jobs = { a = derivation { name = "a"; '
                                     'system = "x86_64-linux"; builder = "/bin/sh"; src = ./data.txt; '
                                     'tree = self; }; }; }; }\n')
    local = eval_locally("--flake", f"{flake}#jobs")
    assert local.code == 0, local.stderr
    hide = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(flake.parent)]
    with services(listen_args(cache=tmp_path / "cache"), prefix=hide) as (service,):
        run = eval_locally("--flake", f"{flake}#jobs", "--workers", "0", "--remote", service.endpoint, "", "1",
                           env=remote_env())
    assert run.code == 0, run.stderr + service.log
    assert run.canonical() == local.canonical()
    assert str(tmp_path / "cache") in service.log  # evaluated from the shipped copy


def _settled(tree: Path) -> None:
    """Waits until `tree` last changed longer ago than a service needs to keep its answer."""
    newest = max(p.lstat().st_ctime_ns for p in [tree, *tree.rglob("*")])
    wait_until(lambda: time.time_ns() - newest > sources.RACY_NS + 500_000_000, "the tree to settle", timeout=10)


def test_a_tree_that_changed_on_the_remote_after_it_was_found_the_same_is_shipped(tmp_path: Path):
    """The remote sees the master's tree at the master's path (found the same: evaluated in
    place), then its copy changes while the master's does not (the master here runs in a mount
    namespace where the original is bound over that path): the remote must not trust its
    earlier answer, it takes the shipped tree and evaluates the master's drvPaths."""
    project = tmp_path / "project"
    entry = _project(project)
    truth = nix_instantiate_all(entry, "-A", "data", "-A", "tree", "-A", "nested.leaf")
    original = tmp_path / "original"
    shutil.copytree(project, original)
    cache = tmp_path / "cache"
    args = ["eval", "--no-daemon", "--file", str(entry), "--workers", "0"]
    _settled(project)
    with services(listen_args(cache=cache)) as (service,):
        first = eval_locally(*args[2:], "--remote", service.endpoint, "", "1", env=remote_env())
        assert first.code == 0, first.stderr + service.log
        assert f"serving --file {entry} " in service.log and not cache.exists()  # evaluated in place
        (project / "data.txt").write_text("changed on the remote\n")
        bind = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"', str(original), str(project)]
        proc = subprocess.run([*bind, *command("evix"), *args, "--remote", service.endpoint, "", "1"],
                              env=evix_env(extra=remote_env()), capture_output=True, timeout=120)
        log = service.log
    second = Run(proc.returncode, proc.stdout, proc.stderr.decode())
    assert second.code == 0, second.stderr + log
    drvs = second.derivations()
    assert [drvs[a]["drvPath"] for a in ("data", "tree", "nested.leaf")] == truth
    assert f"serving --file {cache}" in log


def _same_here(cache: SourceCache, tree: Path, digest: str) -> bool:
    return trio.run(cache.same_here, digest, str(tree), False)


def test_same_here_answers_are_checked_against_the_tree_and_bounded(tmp_path: Path):
    tree = tmp_path / "tree"
    _project(tree)
    digest = ShippedSource(tree, with_git=False).digest()
    cache = SourceCache(tmp_path / "cache")
    _settled(tree)
    assert _same_here(cache, tree, digest) and _same_here(cache, tree, digest)  # the second from what is kept
    (tree / "sub" / "leaf.txt").write_text("another leaf\n")
    assert not _same_here(cache, tree, digest)
    shutil.rmtree(tree)
    _project(tree)
    assert _same_here(cache, tree, digest)  # the same bytes again
    shutil.rmtree(tree)
    assert not _same_here(cache, tree, digest)  # removed
    _project(tree)
    _settled(tree)
    for i in range(SAME_HERE_ENTRIES + 5):
        _same_here(cache, tree, f"{i:064x}")
    assert len(cache._same_here) == SAME_HERE_ENTRIES


def test_the_remote_hashes_a_tree_without_holding_it(tmp_path: Path):
    """What the service computes is the hash of exactly what a master ships, read file by
    file: its memory does not grow with the tree."""
    tree = tmp_path / "tree"
    _project(tree)
    with (tree / "big.bin").open("wb") as f:
        for i in range(32):
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))  # 1 MiB each, 32 MiB in all
    shipped = ShippedSource(tree, with_git=False)
    digest = hashlib.sha256(shipped.pack()).hexdigest()
    cache = SourceCache(tmp_path / "cache")
    tracemalloc.start()
    try:
        same = _same_here(cache, tree, digest)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert same
    assert peak < 4 << 20, f"{peak >> 20} MiB held to hash a 32 MiB tree"


def test_the_hellos_of_one_master_hash_a_just_changed_tree_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A master's slots say hello together, right after an edit (`evix watch`): one of them
    hashes the tree, the others take its answer."""
    tree = tmp_path / "tree"
    _project(tree)  # just written: its answer is not kept for later runs
    digest = ShippedSource(tree, with_git=False).digest()
    hashed = []
    digest_of = ShippedSource.digest
    monkeypatch.setattr(ShippedSource, "digest", lambda self: hashed.append(1) or digest_of(self))
    cache = SourceCache(tmp_path / "cache")
    answers: list[bool] = []

    async def hellos() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(lambda: _append(answers, cache.same_here(digest, str(tree), False)))

    trio.run(hellos)
    assert answers == [True] * 4 and len(hashed) == 1
    assert _same_here(cache, tree, digest) and len(hashed) == 2  # a later run looks again: it had just changed
    assert not cache._asking


async def _append(answers: list[bool], answer) -> None:
    answers.append(await answer)
