"""The watcher under `evix watch` on real directories, and `Session.watch()` as an embedder
uses it: names that are not UTF-8, new directories, a lost-events overflow, a root that
goes and comes back."""

from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path

import pytest
import trio

from evix_helpers import nix_drv_paths
from evixd.engine import Session
from evixd.engine.inotify_watch import Changes, Root, TreeWatcher, pyinotify
from evixd.engine.watch import WatchUpdate
from nix_helpers import derivation_nix, nix_flake_lock
from protocol.config import EvalConfig
from watch_helpers import path_input_flake


async def _next(watcher: TreeWatcher) -> Changes:
    with trio.fail_after(10):
        while not (changes := await watcher.next_changes()):
            pass
    return changes


async def _evaluated(session: Session) -> None:
    """Until the watch's first evaluation has given the session its graph."""
    with trio.fail_after(60):
        while session.graph is None:
            await trio.sleep(0.05)


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
        await _evaluated(session)
        with trio.fail_after(60):
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


async def _first_with(watcher: TreeWatcher, path: Path) -> set[str]:
    """Every path reported up to (and with) the first report of `path`."""
    seen: set[str] = set()
    with trio.fail_after(10):
        while str(path) not in seen:
            seen |= (await watcher.next_changes()).paths
    return seen


async def test_a_single_file_is_watched_for_itself_alone(tmp_path: Path) -> None:
    watcher = TreeWatcher([Root(str(tmp_path), "lib.nix")])
    try:
        watched = watcher.watched_dirs
        (tmp_path / "new" / "deeper").mkdir(parents=True)
        (tmp_path / "new" / "f.nix").write_text("1")
        (tmp_path / "sibling.nix").write_text("1")
        (tmp_path / "lib.nix").write_text("1")
        assert await _first_with(watcher, tmp_path / "lib.nix") == {str(tmp_path / "lib.nix")}
        assert watcher.watched_dirs == watched  # the new directory got no watch
    finally:
        watcher.close()


async def test_a_single_file_inside_a_watched_tree_leaves_the_tree_whole(tmp_path: Path) -> None:
    """The file's directory is in the tree too: a new directory there is watched and seen."""
    (tmp_path / "lib").mkdir()
    watcher = TreeWatcher([Root(str(tmp_path / "lib"), "lib.nix"), Root(str(tmp_path))])
    try:
        (tmp_path / "lib" / "new").mkdir()
        assert str(tmp_path / "lib" / "new") in (await _next(watcher)).paths
        (tmp_path / "lib" / "new" / "f.nix").write_text("1")
        assert str(tmp_path / "lib" / "new" / "f.nix") in await _first_with(watcher, tmp_path / "lib" / "new" / "f.nix")
    finally:
        watcher.close()


async def test_a_watch_reads_the_lock_file_once_per_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What to watch and what to re-lock come from one read of flake.lock (this process's
    reads; the workers read it apart)."""
    root, dep = tmp_path / "main", tmp_path / "dep"
    path_input_flake(root, dep, "one")
    nix_flake_lock(root)
    lock, reads, real_open = str(root / "flake.lock"), [], builtins.open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == lock:
            reads.append(trio.current_time())
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", counting_open)
    session = await Session.open(EvalConfig(flake=f"path:{root}#hydraJobs"))
    async with session.watch() as updates:
        await _evaluated(session)
        assert len(reads) == 1
        (dep / "flake.nix").write_text('{ outputs = { self }: { word = "two"; }; }\n')
        with trio.fail_after(60):
            update = await updates.receive()
    assert [c.name for c in update.diff.changed] == ["hello-two-s1"]  # re-locked: the read was used
    assert len(reads) == 2


async def _changed(updates: trio.MemoryReceiveChannel[WatchUpdate]) -> list[str]:
    with trio.fail_after(60):
        update = await updates.receive()
    assert not update.diff.errors, update.diff.errors
    return [c.name for c in update.diff.changed]


async def test_the_reference_lock_file_decides_the_path_inputs_watched(tmp_path: Path) -> None:
    """dep is listed only in the reference lock file (the root has no flake.lock): it is
    watched and re-locked all the same; the reference lock file is watched itself."""
    root, dep, other = tmp_path / "main", tmp_path / "dep", tmp_path / "other"
    path_input_flake(root, dep, "one")
    nix_flake_lock(root)
    reference = tmp_path / "locks" / "reference.lock"
    reference.parent.mkdir()
    (root / "flake.lock").rename(reference)
    session = await Session.open(EvalConfig(flake=f"path:{root}#hydraJobs", reference_lock_file=str(reference)))
    async with session.watch() as updates:
        await _evaluated(session)
        assert [d.name for d in session.graph.derivations.values()] == ["hello-one-s1"]
        (dep / "flake.nix").write_text('{ outputs = { self }: { word = "two"; }; }\n')
        assert await _changed(updates) == ["hello-two-s1"]
        other.mkdir()
        (other / "flake.nix").write_text('{ outputs = { self }: { word = "three"; }; }\n')
        lock = json.loads(reference.read_text())
        lock["nodes"]["dep"]["locked"]["path"] = str(other)  # dep is another directory now
        reference.write_text(json.dumps(lock))
        assert await _changed(updates) == ["hello-three-s1"]
        (other / "flake.nix").write_text('{ outputs = { self }: { word = "four"; }; }\n')
        assert await _changed(updates) == ["hello-four-s1"]  # the input it lists now is watched
    assert not (root / "flake.lock").exists()
