"""What remote workers are told to evaluate: the config without the master's own fields; a
remote flake reference locked here, once per run (a remote never locks it again, so every
remote evaluates the same revision); a local input's tree shipped: the tree of a `--file`
or local flake, packed once per run as a reproducible tar (sorted, no times or owners),
keyed by its SHA-256, and sent over a connection only when the service does not have it."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import orjson
import trio

from protocol import remote_wire as rw
from protocol.config import EvalConfig
from protocol.flakeref import local_flake_dir, split_flake_ref
from protocol.remote_setup import config_for_remote

from .errors import EvixError
from .framed_stream import FramedStream
from .store_service import StoreService, StoreServiceError



def source_root(config: EvalConfig) -> Path | None:
    """The tree a remote needs for `config`'s input (None: nothing local to ship): a local
    flake's directory (its Git repository for git+file), or a `--file`'s directory."""
    if config.flake is not None:
        ref = split_flake_ref(config.flake)[0]
        return local_flake_dir(ref)
    if config.file is None or config.file.startswith("<"):
        return None
    return Path(config.file).parent


class ShippedSource:
    """The packed tree, made on first use (in a thread: it reads the files)."""

    def __init__(self, root: Path, *, with_git: bool) -> None:
        self.root = root
        self.with_git = with_git
        self._packed: tuple[str, bytes] | None = None
        self._lock = trio.Lock()

    @classmethod
    def for_config(cls, config: EvalConfig) -> ShippedSource | None:
        root = source_root(config)
        return None if root is None else cls(root, with_git=config.flake is not None)

    async def prepare(self) -> tuple[str, str]:
        """(hash, the master's root path) for Hello."""
        async with self._lock:
            if self._packed is None:
                data = await trio.to_thread.run_sync(self.pack)
                self._packed = hashlib.sha256(data).hexdigest(), data
        return self._packed[0], str(self.root)

    async def send(self, conn: FramedStream) -> None:
        assert self._packed is not None
        data = self._packed[1]
        step = rw.SOURCE_CHUNK_BYTES
        for at in range(0, max(len(data), 1), step):
            last = at + step >= len(data)
            await conn.send(rw.encode_request(rw.SourceChunk(data[at:at + step], last)))

    def pack(self) -> bytes:
        """The tree as the reproducible tar that is shipped (kept in memory: it is sent)."""
        out = io.BytesIO()
        self._write_tar(out)
        return out.getvalue()

    def digest(self) -> str:
        """The SHA-256 of `pack()`, computed file by file: memory does not grow with the tree."""
        out = _HashingSink()
        self._write_tar(out)
        return out.hash.hexdigest()

    def fingerprint(self) -> tuple[str, int]:
        """(a digest of every shipped path's metadata: name, type, mode, size, inode, mtime and
        ctime; the newest ctime, in ns): stat calls only, so a tree can be known unchanged
        without reading it again."""
        h = hashlib.sha256()
        newest = 0
        for path in [self.root, *self._walk()]:
            st = path.lstat()
            newest = max(newest, st.st_ctime_ns)
            h.update(orjson.dumps([str(path.relative_to(self.root)), st.st_mode, st.st_size, st.st_ino,
                                   st.st_mtime_ns, st.st_ctime_ns]))
        return h.hexdigest(), newest

    def _write_tar(self, out: io.BytesIO | _HashingSink) -> None:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
            for path in self._walk():
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(self.root)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isreg():
                    self._check_size(out.tell() + info.size)  # before reading a file too big to ship
                    with path.open("rb") as f:
                        tar.addfile(info, f)
                elif info.isdir() or (info.issym() and self._inside(path)):
                    tar.addfile(info)
                self._check_size(out.tell())

    def _check_size(self, size: int) -> None:
        if size > rw.MAX_SOURCE_BYTES:
            raise EvixError(f"{self.root} is larger than {rw.MAX_SOURCE_BYTES >> 20} MiB: too big to ship "
                            "to remote workers (a --file is shipped with its whole directory: give it a "
                            "directory of its own, or put the tree on the remotes at the same path)")

    def _inside(self, link: Path) -> bool:
        """A symbolic link that stays in the tree (others cannot be unpacked safely: left out)."""
        target = os.readlink(link)
        if os.path.isabs(target):
            return False
        resolved = os.path.normpath(os.path.join(link.parent, target))
        return resolved == str(self.root) or resolved.startswith(str(self.root) + os.sep)

    def _walk(self) -> list[Path]:
        found = []
        for directory, dirs, files in os.walk(self.root):
            dirs.sort()
            if not self.with_git and ".git" in dirs:
                dirs.remove(".git")
            base = Path(directory)
            found += [base / d for d in dirs if (base / d).is_symlink()]
            found += [base / d for d in dirs if not (base / d).is_symlink()]
            found += [base / f for f in sorted(files)]
        return sorted(found, key=lambda p: str(p.relative_to(self.root)).split(os.sep))


class _HashingSink:
    """A write-only file for tarfile that keeps only the SHA-256 and the size of what it got."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


class RemoteInput:
    """The Hello every connection of a run sends, made once (locking, packing) on first use."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.shipped = ShippedSource.for_config(config)
        self._config_json: bytes | None = None
        self._lock = trio.Lock()

    async def hello_fields(self) -> tuple[bytes, str, str]:
        """(config JSON, source hash, the master's source root); the last two empty when
        nothing is shipped. EvixError when a flake reference cannot be locked."""
        async with self._lock:
            if self._config_json is None:
                config = config_for_remote(self.config)
                if config.flake is not None and self.shipped is None:
                    config = await self._locked(config)
                self._config_json = orjson.dumps(config.to_json())
        digest, root = await self.shipped.prepare() if self.shipped is not None else ("", "")
        return self._config_json, digest, root

    async def _locked(self, config: EvalConfig) -> EvalConfig:
        """The flake reference (and --override-input references) that are not local, locked."""
        assert config.flake is not None
        ref, sep, fragment = config.flake.partition("#")
        try:
            async with StoreService(self.config) as store:
                locked = await store.lock(ref) or ref
                overrides = []
                for name, r in config.override_inputs:
                    overrides.append((name, (await store.lock(r) or r) if local_flake_dir(r) is None else r))
        except StoreServiceError as e:
            raise EvixError(f"--flake {config.flake}: {e}") from None
        return replace(config, flake=locked + sep + fragment, override_inputs=tuple(overrides))

    async def send_source(self, conn: FramedStream) -> None:
        assert self.shipped is not None
        await self.shipped.send(conn)
