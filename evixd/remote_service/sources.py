"""Input trees a master shipped to this service (a `--file` or a local flake it may not have):
kept by content hash, so each tree crosses the network once, and unpacked under its own
directory name, so the store paths made from it (which keep that name) are the master's."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import trio

from evixd.engine.errors import EvixError
from evixd.engine.remote_sources import ShippedSource
from protocol import remote_wire as rw
from protocol.config import EvalConfig
from protocol.flakeref import split_flake_ref

_HASH = re.compile(r"[0-9a-f]{64}\Z")


class SourceError(Exception):
    """A shipped tree that cannot be taken (the message says why)."""


SAME_HERE_ENTRIES = 64
"""Trees whose "same here" answer a service keeps (least recently asked for dropped first)."""
RACY_NS = 2_000_000_000
"""A tree changed this shortly before it was looked at may change again within the same
timestamp, unseen by its fingerprint: its answer is not kept (as Git does for its index)."""


class SourceCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # key -> (fingerprint, same, when it was found, settled)
        self._same_here: collections.OrderedDict[tuple[str, str, bool], tuple[str, bool, int, bool]] = \
            collections.OrderedDict()
        self._asking: dict[tuple[str, str, bool], trio.Lock] = {}  # one look at a tree at a time

    async def same_here(self, digest: str, master_root: str, with_git: bool) -> bool:
        """This machine has the master's tree at the master's own path, byte for byte (then it
        is evaluated there: same paths in messages too, nothing shipped). The answer is kept
        with the tree's metadata fingerprint and kept only while that holds: a tree changed
        or removed since is hashed again. The Hellos of a master's slots come together: the
        first one looks, the others wait for its answer."""
        key = (digest, master_root, with_git)
        asked = time.time_ns()
        lock = self._asking.setdefault(key, trio.Lock())
        try:
            async with lock:
                return await self._look(key, asked)
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._asking.pop(key, None)

    async def _look(self, key: tuple[str, str, bool], asked: int) -> bool:
        digest, master_root, with_git = key
        root = Path(master_root)
        tree = ShippedSource(root, with_git=with_git)
        looked = time.time_ns()
        try:
            if not (root.is_absolute() and root.is_dir()):
                raise FileNotFoundError(master_root)
            fingerprint, newest = await trio.to_thread.run_sync(tree.fingerprint)
            kept = self._same_here.get(key)
            # a tree that had just changed may change again unseen: such an answer is good only
            # for the callers that were waiting for it
            if kept is not None and kept[0] == fingerprint and (kept[3] or kept[2] >= asked):
                self._same_here.move_to_end(key)
                return kept[1]
            same = await trio.to_thread.run_sync(tree.digest) == digest
        except (OSError, EvixError):
            self._same_here.pop(key, None)
            return False
        self._remember(key, (fingerprint, same, time.time_ns(), looked - newest > RACY_NS))
        return same

    def _remember(self, key: tuple[str, str, bool], answer: tuple[str, bool, int, bool]) -> None:
        """Keeps an answer, the least recently asked for past SAME_HERE_ENTRIES dropped."""
        self._same_here[key] = answer
        self._same_here.move_to_end(key)
        while len(self._same_here) > SAME_HERE_ENTRIES:
            self._same_here.popitem(last=False)

    def _place(self, digest: str, master_root: str) -> Path:
        name = os.path.basename(master_root.rstrip("/"))
        if not _HASH.match(digest) or not master_root.startswith("/") or name in ("", ".", ".."):
            raise SourceError(f"invalid shipped source {digest!r} for {master_root!r}")
        return self.directory / digest / name

    def get(self, digest: str, master_root: str) -> Path | None:
        """The unpacked tree of `digest`, if this service has it (whole: a tree removed from
        under the mark is shipped again)."""
        place = self._place(digest, master_root)
        return place if (place.parent / ".complete").exists() and place.is_dir() else None

    async def receive(self, digest: str, master_root: str,
                      receive: Callable[[], Awaitable[rw.RemoteRequest]]) -> Path:
        """Reads the tree's chunks, checks its hash and unpacks it safely (no links or paths
        that leave the tree); SourceError when it is too big, wrong or not a tree."""
        place = self._place(digest, master_root)
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            archive = Path(tmp) / "source.tar"
            h, size = hashlib.sha256(), 0
            with archive.open("wb") as out:
                while True:
                    chunk = await receive()
                    if not isinstance(chunk, rw.SourceChunk):
                        raise SourceError(f"expected the source tree, got {type(chunk).__name__}")
                    size += len(chunk.data)
                    if size > rw.MAX_SOURCE_BYTES:
                        raise SourceError(f"shipped source larger than {rw.MAX_SOURCE_BYTES >> 20} MiB")
                    h.update(chunk.data)
                    out.write(chunk.data)
                    if chunk.last:
                        break
            if h.hexdigest() != digest:
                raise SourceError("shipped source does not match its hash")
            unpacked = Path(tmp) / "tree" / place.name
            unpacked.mkdir(parents=True)
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(unpacked, filter="data")
            except (tarfile.TarError, OSError) as e:
                raise SourceError(f"cannot unpack the shipped source: {e}") from e
            (Path(tmp) / "tree" / ".complete").touch()
            if not self.get(digest, master_root):
                shutil.rmtree(place.parent, ignore_errors=True)
                os.rename(Path(tmp) / "tree", place.parent)
        return place

    @staticmethod
    def rebase(config: EvalConfig, master_root: str, root: Path) -> EvalConfig:
        """`config` with the master's paths under `master_root` moved to the shipped `root`."""
        def move(path: str | None) -> str | None:
            if path is None or not (path == master_root or path.startswith(master_root.rstrip("/") + "/")):
                return path
            return str(root) + path[len(master_root.rstrip("/")):]

        flake = config.flake
        if flake is not None:
            ref, fragment = split_flake_ref(flake)
            for prefix in ("path:", "git+file://", ""):
                if ref.startswith(prefix + "/"):
                    base, qmark, query = ref[len(prefix):].partition("?")
                    flake = prefix + (move(base) or base) + qmark + query + ("#" + fragment if "#" in flake else "")
                    break
        return replace(config, file=move(config.file), flake=flake, base_dir=move(config.base_dir) or "",
                       reference_lock_file=move(config.reference_lock_file))
