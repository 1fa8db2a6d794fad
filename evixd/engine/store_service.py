"""The master's side of evix_worker.store_service: a Nix process for store questions (path
validity, substituter settings, writing rewritten aggregates, locking a flake reference),
started only by runs that need one (--check-cache-status, --constituents, a remote flake
reference evaluated on remote workers). One request at a time, JSON lines."""

from __future__ import annotations

import subprocess
import sys
from types import TracebackType
from typing import Any

import orjson
import trio

from protocol.config import EvalConfig

from .errors import EvixError


class StoreServiceError(EvixError):
    """The store process failed or answered nonsense."""


class StoreService:
    """`async with StoreService(config) as store:` starts the process and reads Nix's settings."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.settings: dict[str, Any] = {}
        self._process: trio.Process | None = None
        self._buffer = bytearray()
        self._lock = trio.Lock()

    async def __aenter__(self) -> StoreService:
        self._process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "evix_worker.store_service"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.settings = await self._ask({"options": [list(o) for o in self.config.options],
                                         "evalStore": self.config.eval_store,
                                         "nixEvalJobs": self.config.nix_eval_jobs})
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        process = self._process
        if process is None:
            return
        with trio.CancelScope(shield=True):
            assert process.stdin is not None
            await process.stdin.aclose()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        async with self._lock:
            try:
                await process.stdin.send_all(orjson.dumps(request) + b"\n")
                while b"\n" not in self._buffer:
                    chunk = await process.stdout.receive_some(1 << 20)
                    if not chunk:
                        raise StoreServiceError("the Nix store process exited unexpectedly")
                    self._buffer += chunk
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise StoreServiceError(f"the Nix store process is gone: {e}") from None
            end = self._buffer.index(b"\n")
            answer = orjson.loads(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]
        if "error" in answer and "rewrite" not in request:  # a rewrite's error is its answer
            raise StoreServiceError(answer["error"])
        return answer

    async def valid(self, paths: list[str]) -> list[bool]:
        """Whether each store path is valid in the store."""
        if not paths:
            return []
        return (await self._ask({"valid": paths}))["valid"]

    async def rewrite_aggregate(self, drv_path: str, children: list[str], gc_roots_dir: str | None) -> dict[str, Any]:
        """{"drvPath", "outputs"} of the aggregate rewritten to depend on `children`, or
        {"skipped": why} / {"error": message}."""
        return await self._ask({"rewrite": drv_path, "children": children, "gcRootsDir": gc_roots_dir})

    async def lock(self, ref: str) -> str | None:
        """`ref` locked (narHash, rev) as Nix fetches it now; None when it cannot be locked."""
        return (await self._ask({"lock": ref}))["locked"]
