"""The binary cache formats a substituter serves: `<hash>.narinfo` (what one store path is and
what it refers to) and `nix-cache-info` (which store the cache is for, and its priority).
Both are `Key: value` lines."""

from __future__ import annotations

from dataclasses import dataclass


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class NarInfo:
    store_path: str
    references: tuple[str, ...]  # full store paths
    nar_size: int = 0


def parse_narinfo(text: str, store_dir: str = "/nix/store") -> NarInfo:
    """A narinfo's store path and references; ValueError when it names no store path."""
    f = _fields(text)
    if "StorePath" not in f:
        raise ValueError("narinfo without StorePath")
    refs = tuple(f"{store_dir}/{r}" for r in f.get("References", "").split())
    try:
        size = int(f.get("NarSize", "0"))
    except ValueError:
        size = 0
    return NarInfo(f["StorePath"], refs, size)


@dataclass(frozen=True)
class CacheInfo:
    store_dir: str = "/nix/store"
    priority: int = 50  # Nix's default for a binary cache


def parse_cache_info(text: str) -> CacheInfo:
    f = _fields(text)
    try:
        priority = int(f.get("Priority", "50"))
    except ValueError:
        priority = 50
    return CacheInfo(f.get("StoreDir", "/nix/store"), priority)


def hash_part(store_path: str) -> str:
    """The 32-character hash of `/nix/store/<hash>-<name>`: the narinfo's file name."""
    return store_path.rsplit("/", 1)[-1].split("-", 1)[0]


def path_name(store_path: str) -> str:
    """The `<name>` of `/nix/store/<hash>-<name>`."""
    return store_path.rsplit("/", 1)[-1].split("-", 1)[-1]
