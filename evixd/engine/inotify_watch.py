"""Watching directory trees with inotify (pyinotify), read from trio: no thread, no polling.

The WatchManager's inotify fd is awaited with `trio.lowlevel.wait_readable`, then its events
are read and sorted here. What pyinotify does not do for us, done here:
- names that are not UTF-8 (pyinotify decodes strictly and would crash): decoded with
  `surrogateescape`, as `os` does, and encoded back the same way to add a watch;
- a new directory is walked at once (rescanned): files written into it before its watch
  existed produce no event, so the new directory itself counts as a change, and its
  subdirectories get their watches;
- a queue overflow (IN_Q_OVERFLOW: events were lost) counts as a change of everything;
- a watched root that disappears is watched for from its nearest existing ancestor, and
  watched again (and reported) when it comes back;
- a single file is watched through its directory, for its name alone: nothing else there
  (a sibling, a new directory) counts or gets a watch, unless a watched tree holds it too;
- editor temporary and swap files, `.git` internals and `result` links are not changes.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import struct
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType

import trio

log = logging.getLogger("evix.watch")

IGNORED_DIRS = frozenset({".git", ".hg", ".svn", ".direnv", "__pycache__"})
IGNORED_NAMES = ("*.swp", "*.swo", "*.swx", "*~", ".#*", "#*#", "4913", "*.tmp", ".*.kate-swp", "result", "result-*")


def import_pyinotify() -> ModuleType:
    """`pyinotify`, on every Python: it imports `asyncore` (for a class we never use), which
    warns on 3.11 and is gone from 3.12 on, where the `pyasyncore` package provides it; if
    neither is there, a stub module stands in (only that class's base refers to it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import asyncore  # noqa: F401  (3.11's own, or pyasyncore's)
        except ImportError:
            stub = ModuleType("asyncore")
            stub.file_dispatcher = type("file_dispatcher", (), {})  # type: ignore[attr-defined]
            sys.modules.setdefault("asyncore", stub)
        import pyinotify
    return pyinotify


pyinotify = import_pyinotify()
_MASK = (pyinotify.IN_CLOSE_WRITE | pyinotify.IN_CREATE | pyinotify.IN_DELETE | pyinotify.IN_MOVED_FROM
         | pyinotify.IN_MOVED_TO | pyinotify.IN_ATTRIB | pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF
         | pyinotify.IN_MODIFY)


def ignored_name(name: str) -> bool:
    """Names whose changes never matter to an evaluation (editor files, VCS data, build links)."""
    return name in IGNORED_DIRS or any(fnmatch.fnmatchcase(name, p) for p in IGNORED_NAMES)


@dataclass(frozen=True)
class Root:
    """One thing to watch: the directory tree at `path`, or (`file` set) the one entry `file`
    of the directory `path` (a `--watch FILE`, a reference lock file)."""

    path: str
    file: str | None = None


@dataclass
class Changes:
    """What one read of the inotify fd found relevant."""

    paths: set[str] = field(default_factory=set)
    overflow: bool = False  # events were lost: everything may have changed

    def __bool__(self) -> bool:
        return self.overflow or bool(self.paths)


def _read_raw(fd: int) -> list[tuple[int, int, int, str]]:
    """(wd, mask, cookie, name) of each event waiting on `fd`; names decoded as `os` decodes
    them (surrogateescape), where pyinotify's reader would raise on a name that is not UTF-8."""
    try:
        data = os.read(fd, 1 << 20)
    except BlockingIOError:
        return []
    out, i = [], 0
    while i + 16 <= len(data):
        wd, mask, cookie, length = struct.unpack_from("iIII", data, i)
        out.append((wd, mask, cookie, os.fsdecode(data[i + 16:i + 16 + length].rstrip(b"\0"))))
        i += 16 + length
    return out


class _Notifier(pyinotify.Notifier):
    """pyinotify's Notifier with a reader that survives names that are not UTF-8."""

    def read_events(self) -> None:
        for raw in _read_raw(self._fd):
            self._eventq.append(pyinotify._RawEvent(*raw))


class TreeWatcher:
    """inotify watches over `roots`; `next_changes()` waits for the next relevant changes."""

    def __init__(self, roots: Iterable[Root]) -> None:
        self.roots = list(dict.fromkeys(roots))
        self.manager = pyinotify.WatchManager()
        self.notifier = _Notifier(self.manager, self._event)
        os.set_blocking(self.manager.get_fd(), False)
        self._stand_ins: dict[Root, int] = {}  # a missing root -> the wd of the ancestor standing in
        self._trees: set[int] = set()  # wds of the directories of the trees (an ancestor may be one too)
        self._files: dict[int, set[str]] = {}  # wd of a single file's directory -> the names watched in it
        self._changes = Changes()
        for root in self.roots:
            self._watch_root(root)

    def close(self) -> None:
        self.manager.close()

    def add_roots(self, roots: Iterable[Root]) -> None:
        """Watches the `roots` not watched yet (a path input added to flake.lock)."""
        for root in roots:
            if root not in self.roots:
                self.roots.append(root)
                self._watch_root(root)

    @property
    def watched_dirs(self) -> int:
        return len(self.manager.watches)

    # ---- adding watches ---------------------------------------------------------------
    def _add(self, path: str) -> int | None:
        try:
            wd = self.manager.add_watch(path, _MASK, quiet=True).get(os.path.normpath(path), -1)
        except UnicodeEncodeError:  # pyinotify encodes paths strictly: a non-UTF-8 directory
            log.info("cannot watch %r: its name is not UTF-8 (changes inside it are not seen)", path)
            return None
        return wd if wd >= 0 else None

    def _watch_root(self, root: Root) -> None:
        """Watches `root`; while it is missing, its nearest existing ancestor stands in."""
        if os.path.isdir(root.path):
            if root.file is None:
                self._add_tree(root.path)
            elif (wd := self._add(root.path)) is not None:
                self._files.setdefault(wd, set()).add(root.file)
            return
        ancestor = os.path.dirname(root.path)
        while ancestor != "/" and not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        wd = self._add(ancestor)
        if wd is not None:
            self._stand_ins[root] = wd
        log.info("%s is missing: watching %s for it to come back", root.path, ancestor)

    def _add_tree(self, top: str) -> None:
        """Watches `top` and (recursively) its directories, skipping ignored ones and symlinks."""
        dirs = [top]
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = [d for d in dirnames if not ignored_name(d)]
            dirs += [os.path.join(dirpath, d) for d in dirnames]
        for d in dirs:
            wd = self._add(d)
            if wd is not None:
                self._trees.add(wd)

    # ---- reading ----------------------------------------------------------------------
    async def next_changes(self) -> Changes:
        """Waits until the fd is readable and returns what changed (maybe nothing relevant)."""
        await trio.lowlevel.wait_readable(self.manager.get_fd())
        self.notifier.read_events()
        self.notifier.process_events()  # pyinotify's bookkeeping, then `_event` for each
        changes, self._changes = self._changes, Changes()
        return changes

    def _event(self, event: pyinotify.Event) -> None:
        if event.mask & pyinotify.IN_Q_OVERFLOW:
            log.warning("the inotify queue overflowed: events were lost, re-evaluating everything")
            self._changes.overflow = True
            return
        for root, wd in list(self._stand_ins.items()):
            if wd == event.wd:  # beside a missing root: is it back?
                self._maybe_back(root)
        in_tree = event.wd in self._trees
        if not in_tree and event.wd not in self._files:  # only a stand-in
            return
        if event.mask & (pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF):  # a watched directory went
            self._trees.discard(event.wd)
            self._files.pop(event.wd, None)
            self._changes.paths.add(event.path)
            for gone in self.roots:
                if gone.path == os.path.normpath(event.path.removesuffix("-unknown-path")):
                    if event.mask & pyinotify.IN_MOVE_SELF:  # (a deleted one's watch is gone already)
                        self.manager.rm_watch(event.wd, quiet=True)
                    self._watch_root(gone)  # an ancestor stands in until it comes back
            return
        if event.mask & pyinotify.IN_IGNORED or ignored_name(event.name):
            return
        if not in_tree and event.name not in self._files[event.wd]:  # a single file's sibling
            return
        self._changes.paths.add(event.pathname)
        if in_tree and event.dir and event.mask & (pyinotify.IN_CREATE | pyinotify.IN_MOVED_TO):
            self._add_tree(event.pathname)  # rescanned: its contents are taken as they are now

    def _maybe_back(self, root: Root) -> None:
        if not os.path.isdir(root.path):
            return
        wd = self._stand_ins.pop(root)
        if wd not in self._trees and wd not in self._files and wd not in self._stand_ins.values():
            self.manager.rm_watch(wd, quiet=True)
        self._watch_root(root)
        self._changes.paths.add(root.path)
        log.info("%s is back: watching it again", root.path)
