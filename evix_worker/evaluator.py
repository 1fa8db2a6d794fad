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
from nixffi.traverse import HAS_AGGREGATE, HAS_FEATURES, HAS_META, Kind, attr_names_json, classify, classify_child, derivation_json
from protocol.config import EvalConfig
from protocol.events import format_attr, quote_attr

from . import drvfile, gcroots, job_fields
from .meta import lenient_meta, strict_meta

ATTRS = ValueType.ATTRS


@dataclass
class BatchOutcome:
    events: list[bytes] = field(default_factory=list)
    expansions: list[bytes] = field(default_factory=list)  # JSON `[attrPath, [names]]` each
    done: int = 0
    derivations: int = 0
    errors: int = 0
    restart: bool = False


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Evaluator:
    def __init__(self, root: nixffi.Value, config: EvalConfig, apply: nixffi.Value | None = None) -> None:
        self.config = config
        self.apply = apply  # the --apply function
        self.sets: dict[tuple[str, ...], nixffi.Value] = {(): root}
        self.limit_kib = config.max_memory_mb * 1024
        self.expand_all = config.force_recurse
        self.retiring = False

    # ---- batches ------------------------------------------------------------------------
    def run(self, chunks: list[list[Any]], mark: Callable[[int], None]) -> BatchOutcome:
        """Evaluates the batch; `mark(i)` is called before the i-th item (flat index) starts."""
        out = BatchOutcome()
        if self.retiring:  # asked to be replaced: batches sent meanwhile go back untouched
            out.restart = True
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
                if out.restart:
                    self.retiring = True
                    return out
                continue
            for name in items:
                mark(out.done)
                if name is None:
                    self._self_item(value, path, out)
                else:
                    self._child(value, path, prefix, name, out)
                out.done += 1
                if out.restart or peak_rss_kib() > self.limit_kib:
                    out.restart = self.retiring = True
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
        names = attr_names_json(v)
        path_json = orjson.dumps(path)
        out.events.append(b'{"attr":' + orjson.dumps(attr) + b',"attrPath":' + path_json + b',"attrs":' + names + b"}")
        if names != b"[]":
            out.expansions.append(b"[" + path_json + b"," + names + b"]")

    def _error(self, path: tuple[str, ...], attr: str, error: Exception, out: BatchOutcome) -> None:
        if not isinstance(error, NixError):  # reading the .drv or writing a GC root
            message = f"error: {error}"
        elif not error.out_of_memory:
            message = error.message
        else:  # the GC heap cap: this worker's heap is spent
            message = (f"out of memory: evaluating this attribute passed the worker memory limit "
                       f"(--max-memory {self.limit_kib >> 10} MiB); Nix said: {error.message}")
            out.restart = True
        out.errors += 1
        out.events.append(orjson.dumps({"attr": attr, "attrPath": path, "error": message, "fatal": False}))

    def _derivation(self, v: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        fields, flags = derivation_json(v)
        config = self.config
        extra: list[bytes] = []
        if config.meta and (flags & HAS_META or config.nix_eval_jobs):
            extra += self._meta_fields(v, flags)
        if config.constituents and flags & HAS_AGGREGATE:
            aggregate = job_fields.eval_jobs_constituents(v)
            if aggregate is not None:
                extra += [b',"' + k.encode() + b'":' + orjson.dumps(x) for k, x in aggregate.items()]
        elif flags & HAS_AGGREGATE and not config.nix_eval_jobs:
            constituents = self._constituents(v)
            if constituents is not None:
                extra += [b',"constituents":', orjson.dumps(constituents)]
        if self.apply is not None:
            extra += [b',"extraValue":', job_fields.extra_value(v, self.apply)]
        if not config.no_instantiate and (config.show_input_drvs or config.gc_roots_dir or flags & HAS_FEATURES):
            drv_path = orjson.loads(b"{" + fields + b"}")["drvPath"]
            if flags & HAS_FEATURES:
                platform, features = job_fields.drv_facts(drv_path)
                if config.nix_eval_jobs:  # nix-eval-jobs' system is the .drv's platform
                    d = orjson.loads(b"{" + fields + b"}")
                    d["system"] = platform
                    fields = orjson.dumps(d)[1:-1]
                if features:
                    extra += [b',"requiredSystemFeatures":', orjson.dumps(features)]
            if config.show_input_drvs:
                extra += [b',"inputDrvs":', orjson.dumps(drvfile.read_input_drvs(drv_path))]
            if config.gc_roots_dir:
                gcroots.add_root(config.gc_roots_dir, drv_path)
        out.derivations += 1
        out.events.append(b"".join([b'{"attr":', orjson.dumps(attr), b',"attrPath":', orjson.dumps(path), b",",
                                    fields, *extra, b"}"]))

    def _meta_fields(self, v: nixffi.Value, flags: int) -> list[bytes]:
        """evix's lenient meta and metaError, or nix-eval-jobs' meta (null when there is none;
        a failure is the job's error)."""
        if self.config.nix_eval_jobs:
            return [b',"meta":', orjson.dumps(strict_meta(v) if flags & HAS_META else None)]
        meta, meta_error = lenient_meta(v)
        fields = [b',"meta":', meta] if meta is not None else []
        if meta_error is not None:
            fields += [b',"metaError":', orjson.dumps(meta_error)]
        return fields

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
