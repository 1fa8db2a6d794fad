"""The watcher under `evix watch` on real directories, and `Session.watch()` as an embedder
uses it: names that are not UTF-8, new directories, a lost-events overflow, a root that
goes and comes back."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import trio

from evix_helpers import nix_drv_paths
from evixd.engine import Session
from evixd.engine.inotify_watch import Changes, Root, TreeWatcher, pyinotify
from nix_helpers import derivation_nix
from protocol.config import EvalConfig


async def _next(watcher: TreeWatcher) -> Changes:
    with trio.fail_after(10):
        while not (changes := await watcher.next_changes()):
            pass
    return changes


async def test_names_that_are_not_utf8_and_new_directories(tmp_path: Path) -> None:
    watcher = TreeWatcher([Root(str(tmp_path))])
    try:
        odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.nix")
        Path(odd).write_text("x")
        assert odd in (await _next(watcher)).paths
        (tmp_path / "new" / "deeper").mkdir(parents=True)  # before any watch on it exists
        (tmp_path / "new" / "deeper" / "f.nix").write_text("1")
        await _next(watcher)
        (tmp_path / "new" / "deeper" / "f.nix").write_text("2")  # rescanned: now watched
        changes = await _next(watcher)
        assert str(tmp_path / "new" / "deeper" / "f.nix") in changes.paths
    finally:
        watcher.close()


async def test_an_overflow_is_a_change_of_everything(tmp_path: Path) -> None:
    watcher = TreeWatcher([Root(str(tmp_path))])
    try:
        # the kernel's event for a full queue (wd -1), as it arrives when events were lost
        watcher.notifier._eventq.append(pyinotify._RawEvent(-1, pyinotify.IN_Q_OVERFLOW, 0, ""))
        watcher.notifier.process_events()
        (tmp_path / "x").write_text("x")
        assert (await _next(watcher)).overflow
    finally:
        watcher.close()


async def test_a_root_that_goes_is_watched_again_when_it_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    watcher = TreeWatcher([Root(str(root))])
    try:
        shutil.rmtree(root)
        assert str(root) in (await _next(watcher)).paths
        root.mkdir()
        assert str(root) in (await _next(watcher)).paths
        (root / "f.nix").write_text("1")
        assert str(root / "f.nix") in (await _next(watcher)).paths
    finally:
        watcher.close()


async def test_session_watch_for_an_embedder(tmp_path: Path) -> None:
    f = tmp_path / "jobs.nix"
    f.write_text("{ a = %s; }" % derivation_nix("a-1"))
    session = await Session.open(EvalConfig(file=str(f)))
    async with session.watch() as updates:
        with trio.fail_after(60):
            while session.graph is None:  # the first evaluation
                await trio.sleep(0.05)
            f.write_text("{ a = %s; }" % derivation_nix("a-2"))
            update = await updates.receive()
    (changed,) = update.diff.changed
    assert changed.drv_path == nix_drv_paths("{ a = %s; }" % derivation_nix("a-2"), [["a"]])["a"]
    assert update.summary is not None and update.summary.derivations == 1
    assert session.graph.derivations["a"].drv_path == changed.drv_path  # the warm graph follows


async def test_a_missing_root_beside_a_watched_tree_hides_none_of_its_changes(tmp_path: Path) -> None:
    """The ancestor standing in for a deleted root may be a watched directory itself."""
    (tmp_path / "lib").mkdir()
    watcher = TreeWatcher([Root(str(tmp_path)), Root(str(tmp_path / "lib"))])
    try:
        shutil.rmtree(tmp_path / "lib")
        await _next(watcher)
        (tmp_path / "jobs.nix").write_text("1")
        assert str(tmp_path / "jobs.nix") in (await _next(watcher)).paths
        (tmp_path / "lib").mkdir()
        (tmp_path / "lib" / "f.nix").write_text("1")
        await _next(watcher)
        (tmp_path / "lib" / "f.nix").write_text("2")
        assert str(tmp_path / "lib" / "f.nix") in (await _next(watcher)).paths
    finally:
        watcher.close()
