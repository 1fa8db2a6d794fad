"""Evaluates batches of attributes: the worker's hot path.

A batch is a list of chunks `(parent path, child names)` (names None: the path itself,
used for the root). For each child the worker emits at most one event as a JSON line:
a derivation, an attrset to traverse (root always; below it only with
`recurseForDerivations = true` or `--force-recurse`), or an error; anything else is skipped.
Attrsets this worker has traversed are kept, so walking to a parent is one lookup.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

import nixffi
from nixffi import NixError, ValueType
from nixffi.traverse import HAS_AGGREGATE, HAS_META, Kind, attr_names_json, classify, classify_child, derivation_json
from protocol.config import EvalConfig
from protocol.events import format_attr, quote_attr

from . import drvfile, gcroots
from .names import INVALID_NAME, is_utf8, split_names

ATTRS = ValueType.ATTRS


@dataclass
class BatchOutcome:
    events: list[bytes] = field(default_factory=list)
    expansions: list[bytes] = field(default_factory=list)  # JSON `[attrPath, [names]]` each
    done: int = 0
    derivations: int = 0
    errors: int = 0
    recycle: bool = False


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Evaluator:
    def __init__(self, root: nixffi.Value, config: EvalConfig) -> None:
        self.config = config
        self.sets: dict[tuple[str, ...], nixffi.Value] = {(): root}
        self.limit_kib = config.max_memory_mb * 1024
        self.expand_all = config.force_recurse
        self.recycling = False

    # ---- batches ------------------------------------------------------------------------
    def run(self, chunks: list[list[Any]], mark: Callable[[int], None]) -> BatchOutcome:
        """Evaluates the batch; `mark(i)` is called before the i-th item (flat index) starts."""
        out = BatchOutcome()
        if self.recycling:  # asked to be recycled: batches sent meanwhile go back untouched
            out.recycle = True
            return out
        for parent, names in chunks:
            path = tuple(parent)
            items: list[str | None] = [None] if names is None else names  # None: the path itself
            prefix = format_attr(path) + "." if path else ""
            mark(out.done)  # walking to the parent can crash too: blame its first item
            try:
                value = self._set_at(path)
            except NixError as e:
                for name in items:
                    self._error(*self._where(path, prefix, name), e, out)
                    out.done += 1
                if out.recycle:
                    self.recycling = True
                    return out
                continue
            for name in items:
                mark(out.done)
                if name is None:
                    self._self_item(value, path, out)
                else:
                    self._child(value, path, prefix, name, out)
                out.done += 1
                if out.recycle or peak_rss_kib() > self.limit_kib:
                    out.recycle = self.recycling = True
                    return out
        return out

    @staticmethod
    def _where(path: tuple[str, ...], prefix: str, name: str | None) -> tuple[tuple[str, ...], str]:
        """The attrPath and attr of item `name` of `path` (None: `path` itself)."""
        if name is None:
            return path, prefix[:-1]
        return path + (name,), prefix + quote_attr(name)

    def _set_at(self, path: tuple[str, ...]) -> nixffi.Value:
        v = self.sets.get(path)
        if v is None:
            v = self.sets[path] = self._set_at(path[:-1]).get(path[-1])  # get() forces it
        return v

    # ---- one attribute ------------------------------------------------------------------
    def _self_item(self, v: nixffi.Value, path: tuple[str, ...], out: BatchOutcome) -> None:
        """The value at `path` itself (the root): a derivation, else a set to traverse."""
        attr = format_attr(path)
        try:
            if classify(v, self.expand_all) == Kind.DERIVATION:
                self._derivation(v, path, attr, out)
            else:
                self._attrset(v, path, attr, out)
        except (NixError, OSError, drvfile.DrvParseError) as e:
            self._error(path, attr, e, out)

    def _child(self, parent: nixffi.Value, path: tuple[str, ...], prefix: str, name: str, out: BatchOutcome) -> None:
        try:
            kind, v = classify_child(parent, name.encode("utf-8", "surrogateescape"), self.expand_all)
            if kind == Kind.DERIVATION:
                self._derivation(v, path + (name,), prefix + quote_attr(name), out)
            elif kind == Kind.TRAVERSE:
                child_path = path + (name,)
                self.sets[child_path] = v
                self._attrset(v, child_path, prefix + quote_attr(name), out)
        except (NixError, OSError, drvfile.DrvParseError) as e:
            self._error(path + (name,), prefix + quote_attr(name), e, out)

    # ---- events ---------------------------------------------------------------------------
    def _attrset(self, v: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        names = expand = attr_names_json(v)
        invalid: list[str] = []
        if not is_utf8(names):  # some name is bytes that are not UTF-8: see names.py
            names, valid, invalid = split_names([n.encode("utf-8", "surrogateescape") for n in v.names()])
            expand = orjson.dumps(valid)
        path_json = orjson.dumps(path)
        out.events.append(b'{"attr":' + orjson.dumps(attr) + b',"attrPath":' + path_json + b',"attrs":' + names + b"}")
        if expand != b"[]":
            out.expansions.append(b"[" + path_json + b"," + expand + b"]")
        for name in invalid:
            out.errors += 1
            out.events.append(orjson.dumps({"attr": (attr + "." if path else "") + quote_attr(name),
                                            "attrPath": path + (name,), "error": INVALID_NAME, "fatal": False}))

    def _error(self, path: tuple[str, ...], attr: str, error: Exception, out: BatchOutcome) -> None:
        if not isinstance(error, NixError):  # reading the .drv or writing a GC root
            message = f"error: {error}"
        elif not error.out_of_memory:
            message = error.message
        else:  # the GC heap cap: this worker's heap is spent
            message = (f"out of memory: evaluating this attribute passed the worker memory limit "
                       f"(--max-memory {self.limit_kib >> 10} MiB); Nix said: {error.message}")
            out.recycle = True
        out.errors += 1
        out.events.append(orjson.dumps({"attr": attr, "attrPath": path, "error": message, "fatal": False}))

    def _derivation(self, v: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        fields, flags = derivation_json(v)
        parts = [b'{"attr":', orjson.dumps(attr), b',"attrPath":', orjson.dumps(path), b",", fields]
        config = self.config
        if config.meta and flags & HAS_META:
            meta = self._meta(v)
            if meta is not None:
                parts += [b',"meta":', meta]
        if config.show_input_drvs or config.gc_roots_dir:
            drv_path = orjson.loads(b"{" + fields + b"}")["drvPath"]
            if config.show_input_drvs:
                parts += [b',"inputDrvs":', orjson.dumps(drvfile.read_input_drvs(drv_path))]
            if config.gc_roots_dir:
                gcroots.add_root(config.gc_roots_dir, drv_path)
        if flags & HAS_AGGREGATE:
            constituents = self._constituents(v)
            if constituents is not None:
                parts += [b',"constituents":', orjson.dumps(constituents)]
        parts.append(b"}")
        out.derivations += 1
        out.events.append(b"".join(parts))

    @staticmethod
    def _meta(v: nixffi.Value) -> bytes | None:
        """meta as JSON; the parts that fail to evaluate or are not JSON are left out."""
        try:
            meta = v.get("meta").to_python(lenient=True)
            return orjson.dumps(meta) if meta is not None else None
        except (NixError, TypeError, orjson.JSONEncodeError):
            return None

    @staticmethod
    def _constituents(v: nixffi.Value) -> list[str] | None:
        """Hydra aggregates: drvPaths of derivation constituents, names of string ones."""
        flag = v.get("_hydraAggregate")
        if flag.type != ValueType.BOOL or not flag.as_bool() or not v.has("constituents"):
            return None
        result = []
        for c in v.get("constituents"):
            t = c.type
            if t == ValueType.STRING:
                result.append(c.as_str())
            elif t == ATTRS and c.has("drvPath"):
                result.append(c.get("drvPath").as_str())
        return result
