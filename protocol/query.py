"""Filters over a warm derivation graph (`evix query`, `Session.query_snapshot`, RPC `query`)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from .events import parse_attr


@dataclass(frozen=True)
class Filter:
    """A derivation matches when it passes every given criterion (each a list: any of them).

    systems: exact `system`; attr_prefix: path prefixes, element-wise ("a.b" matches "a.b.c",
    not "a.bc"); names: exact derivation `name`; drv_paths: exact `drvPath`; attr_globs:
    shell patterns over `attr` ("*" crosses dots); meta_error: True for derivations whose
    `meta` failed to evaluate (a `metaError`), False for the others.
    """

    systems: tuple[str, ...] | None = None
    attr_prefix: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    drv_paths: tuple[str, ...] | None = None
    attr_globs: tuple[str, ...] | None = None
    meta_error: bool | None = None

    def compile(self) -> CompiledFilter:
        return CompiledFilter(self)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for key, value in (("systems", self.systems), ("attrPrefix", self.attr_prefix), ("names", self.names),
                           ("drvPaths", self.drv_paths), ("attrGlobs", self.attr_globs)):
            if value is not None:
                out[key] = list(value)
        if self.meta_error is not None:
            out["hasMetaError"] = self.meta_error
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Filter:
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise ValueError("filter must be a JSON object")
        keys = {"systems": "systems", "attrPrefix": "attr_prefix", "names": "names", "drvPaths": "drv_paths",
                "attrGlobs": "attr_globs"}
        unknown = sorted(set(d) - set(keys) - {"hasMetaError"})
        if unknown:
            raise ValueError(f"unknown filter field(s): {', '.join(unknown)} (known: {', '.join(keys)})")
        kw = {}
        for key, name in keys.items():
            v = d.get(key)
            if v is None:
                continue
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"filter.{key} must be a string or an array of strings")
            for i, x in enumerate(v):
                if "\0" in x:
                    raise ValueError(f"filter.{key}[{i}] contains a NUL character, which no attribute, name or "
                                     "path has: refused")
            kw[name] = tuple(v)
        meta_error = d.get("hasMetaError")
        if meta_error is not None and not isinstance(meta_error, bool):
            raise ValueError("filter field hasMetaError must be a boolean")
        return cls(**kw, meta_error=meta_error)


class CompiledFilter:
    """A Filter prepared for matching many records quickly."""

    def __init__(self, f: Filter) -> None:
        self.systems = frozenset(f.systems) if f.systems is not None else None
        self.prefixes = [tuple(parse_attr(p)) for p in f.attr_prefix] if f.attr_prefix is not None else None
        self.names = frozenset(f.names) if f.names is not None else None
        self.drv_paths = frozenset(f.drv_paths) if f.drv_paths is not None else None
        self.glob = (
            re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in f.attr_globs)) if f.attr_globs else None
        )
        self.empty_globs = f.attr_globs is not None and not f.attr_globs
        self.meta_error = f.meta_error
        self.is_everything = all(
            x is None for x in (self.systems, self.prefixes, self.names, self.drv_paths, self.meta_error)
        ) and not (self.glob or self.empty_globs)

    def matches(self, attr: str, attr_path: tuple[str, ...], name: str, system: str, drv_path: str,
                meta_error: bool = False) -> bool:
        if self.meta_error is not None and meta_error != self.meta_error:
            return False
        if self.systems is not None and system not in self.systems:
            return False
        if self.names is not None and name not in self.names:
            return False
        if self.drv_paths is not None and drv_path not in self.drv_paths:
            return False
        if self.prefixes is not None and not any(attr_path[: len(p)] == p for p in self.prefixes):
            return False
        if self.empty_globs or (self.glob is not None and not self.glob.match(attr)):
            return False
        return True
