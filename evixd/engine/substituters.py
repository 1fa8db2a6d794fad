"""Whether Nix's substituters can provide a store path: `.narinfo` lookups over HTTP(S) and
`file://`, concurrent, each path looked up once per run.

The substituters are those Nix's settings name (`substituters`, `extra-substituters`,
NIX_CONFIG), as the Nix store process reads them, ordered by priority as Nix orders them.
A cache for another store directory is skipped; one that fails (not a 404) is disabled
for the rest of the run with a warning, as Nix disables it.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import trio

from protocol.narinfo import CacheInfo, NarInfo, hash_part, parse_cache_info, parse_narinfo

log = logging.getLogger("evix.substituters")

TIMEOUT = 10.0  # seconds per request
CONNECTIONS = 16  # lookups in flight at once


class _Missing(Exception):
    """The cache has no such file (404 or 403, as S3 answers)."""


@dataclass
class _Cache:
    url: str  # without parameters
    info: CacheInfo = field(default_factory=CacheInfo)
    broken: bool = False

    def fetch(self, name: str) -> str:
        """The text of `<cache>/<name>`; _Missing if absent, OSError when the cache fails."""
        if self.url.startswith("file://"):
            path = urllib.parse.unquote(urllib.parse.urlparse(self.url).path).rstrip("/") + "/" + name
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read()
            except FileNotFoundError:
                raise _Missing from None
        try:
            with urllib.request.urlopen(f"{self.url.rstrip('/')}/{name}", timeout=TIMEOUT) as response:
                return response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            if e.code in (403, 404):
                raise _Missing from None
            raise OSError(f"HTTP {e.code}") from None
        except urllib.error.URLError as e:
            raise OSError(str(e.reason)) from None


class Substituters:
    """`await lookup(path)`: the first substituter's NarInfo for `path`, or None."""

    def __init__(self, urls: list[str], store_dir: str = "/nix/store") -> None:
        self.store_dir = store_dir
        self.caches: list[_Cache] = []
        self._priorities: dict[str, int | None] = {}
        for url in dict.fromkeys(urls):
            base = url.split("?", 1)[0]
            if base and base not in self._priorities:
                self.caches.append(_Cache(base))
                self._priorities[base] = _url_priority(url)
        self._limiter = trio.CapacityLimiter(CONNECTIONS)
        self._found: dict[str, NarInfo | None] = {}
        self._pending: dict[str, trio.Event] = {}
        self._opened = False
        self._opening = trio.Lock()

    async def _open(self) -> None:
        """Reads each cache's nix-cache-info once (its store directory and priority)."""
        self._opened = True
        for cache in self.caches:
            try:
                async with self._limiter:
                    cache.info = parse_cache_info(await trio.to_thread.run_sync(cache.fetch, "nix-cache-info"))
            except _Missing:
                pass
            except OSError as e:
                self._disable(cache, e)
                continue
            if cache.info.store_dir != self.store_dir:
                log.warning("binary cache '%s' is for Nix stores with prefix '%s', not '%s': not used",
                            cache.url, cache.info.store_dir, self.store_dir)
                cache.broken = True
        self.caches.sort(key=lambda c: c.info.priority if self._priorities[c.url] is None else self._priorities[c.url])

    def _disable(self, cache: _Cache, error: OSError) -> None:
        if not cache.broken:
            log.warning("disabling binary cache '%s' for this run: %s", cache.url, error)
        cache.broken = True

    async def lookup(self, path: str) -> NarInfo | None:
        if path in self._found:
            return self._found[path]
        pending = self._pending.get(path)
        if pending is not None:
            await pending.wait()
            return self._found[path]
        self._pending[path] = event = trio.Event()
        try:
            async with self._opening:
                if not self._opened:
                    await self._open()
            self._found[path] = await self._lookup(path)
        finally:
            self._found.setdefault(path, None)
            del self._pending[path]
            event.set()
        return self._found[path]

    async def _lookup(self, path: str) -> NarInfo | None:
        for cache in self.caches:
            if cache.broken:
                continue
            try:
                async with self._limiter:
                    text = await trio.to_thread.run_sync(cache.fetch, f"{hash_part(path)}.narinfo")
                info = parse_narinfo(text, self.store_dir)
            except _Missing:
                continue
            except (OSError, ValueError) as e:
                self._disable(cache, OSError(str(e)))
                continue
            if info.store_path == path:
                return info
        return None


def _url_priority(url: str) -> int | None:
    """A `?priority=N` given with the substituter's URL (it overrides nix-cache-info)."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    try:
        return int(query["priority"][0])
    except (KeyError, ValueError, IndexError):
        return None
