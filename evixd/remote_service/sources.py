"""Input trees a master shipped to this service (a `--file` or a local flake it may not have):
kept by content hash, so each tree crosses the network once, and unpacked under its own
directory name, so the store paths made from it (which keep that name) are the master's."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
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


class SourceCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._same_here: dict[tuple[str, str], bool] = {}

    async def same_here(self, digest: str, master_root: str, with_git: bool) -> bool:
        """This machine has the master's tree at the master's own path, byte for byte (then it
        is evaluated there: same paths in messages too, nothing shipped)."""
        key = (digest, master_root)
        if key not in self._same_here:
            root = Path(master_root)
            same = False
            if root.is_absolute() and root.is_dir():
                try:
                    packed = await trio.to_thread.run_sync(ShippedSource(root, with_git=with_git).pack)
                    same = hashlib.sha256(packed).hexdigest() == digest
                except (OSError, EvixError):
                    same = False
            self._same_here[key] = same
        return self._same_here[key]

    def _place(self, digest: str, master_root: str) -> Path:
        name = os.path.basename(master_root.rstrip("/"))
        if not _HASH.match(digest) or not master_root.startswith("/") or name in ("", ".", ".."):
            raise SourceError(f"invalid shipped source {digest!r} for {master_root!r}")
        return self.directory / digest / name

    def get(self, digest: str, master_root: str) -> Path | None:
        """The unpacked tree of `digest`, if this service has it."""
        place = self._place(digest, master_root)
        return place if (place.parent / ".complete").exists() else None

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
