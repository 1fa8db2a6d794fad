"""Evaluates batches of attributes: the worker's hot path.

A batch is a list of chunks `(parent path, child names)` (names None: the path itself,
used for the root). For each child the worker emits at most one event as a JSON line:
a derivation, an attrset to traverse (root always; below it only with
`recurseForDerivations = true` or `--force-recurse`), or an error; anything else is skipped.
A function is auto-called with the --arg/--argstr values first, as nix-eval-jobs does, and
its result judged by the same rules. A set that is its own ancestor, or deeper than
`--max-depth`, is an error instead (traversal_limits.py).
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
from protocol.events import attrset_event, derivation_event, error_event, format_attr, quote_attr
from protocol.own_memory import OwnMemory

from . import drvfile, gcroots, job_fields
from .meta import lenient_meta, strict_meta
from .names import INVALID_NAME, is_utf8, split_names
from .traversal_limits import cut_reason

ATTRS = ValueType.ATTRS


@dataclass
class BatchOutcome:
    events: list[bytes] = field(default_factory=list)
    expansions: list[bytes] = field(default_factory=list)  # JSON `[attrPath, [names]]` each
    done: int = 0
    derivations: int = 0
    errors: int = 0
    recycle: bool = False
    out_of_memory: str = ""  # the item at `done` passed the memory limit (Nix's message); not done


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Evaluator:
    def __init__(self, root: nixffi.Value, config: EvalConfig, apply: nixffi.Value | None = None) -> None:
        self.config = config
        self.apply = apply  # the --apply function
        self.sets: dict[tuple[str, ...], nixffi.Value] = {(): root}
        self.limit = config.max_memory_mb << 20
        self.memory = OwnMemory()  # made in the worker (after a fork): its own pages, not the template's
        self.expand_all = config.force_recurse
        self.recycling = False
        self._auto_args: nixffi.Value | None = None  # the --arg/--argstr set, made at the first function

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
                    if out.out_of_memory:
                        out.recycle = self.recycling = True
                        return out
                    out.done += 1
                continue
            for name in items:
                mark(out.done)
                if name is None:
                    self._self_item(value, path, out)
                else:
                    self._child(value, path, prefix, name, out)
                if out.out_of_memory:  # not done: the master retries it alone in a fresh worker
                    out.recycle = self.recycling = True
                    return out
                out.done += 1
                if self.memory.exceeds(self.limit, peak_rss_kib() << 10):
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
            parent = self._set_at(path[:-1])
            v = self.sets[path] = self._auto_called(parent.get(path[-1]))  # get() forces it
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
                self._traverse(v, path + (name,), prefix + quote_attr(name), out)
            elif kind == Kind.FUNCTION:
                self._function(v, path + (name,), prefix + quote_attr(name), out)
        except (NixError, OSError, drvfile.DrvParseError) as e:
            self._error(path + (name,), prefix + quote_attr(name), e, out)

    def _traverse(self, v: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        """A set below the root to expand, unless it is its own ancestor or too deep."""
        reason = cut_reason(self.sets, path, v, self.config.max_depth)
        if reason is not None:
            out.errors += 1
            out.events.append(error_event(attr, path, reason))
            return
        self.sets[path] = v
        self._attrset(v, path, attr, out)

    def _function(self, fn: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        """A function below the root, auto-called; a result that is neither a derivation nor a
        set to traverse (`x: x` stays a function) is skipped, as nix-eval-jobs does."""
        v = self._call(fn)
        kind = classify(v, self.expand_all)
        if kind == Kind.DERIVATION:
            self._derivation(v, path, attr, out)
        elif kind == Kind.TRAVERSE:
            self._traverse(v, path, attr, out)

    def _call(self, fn: nixffi.Value) -> nixffi.Value:
        """Nix's autoCallFunction with --arg/--argstr (a missing argument raises Nix's error)."""
        if self._auto_args is None:
            args = [nixffi.AutoArg(a.name, a.value, a.is_string) for a in self.config.args]
            self._auto_args = fn.state.auto_args(args, self.config.base_dir or None)
        return fn.state.auto_call_with(fn, self._auto_args)

    def _auto_called(self, v: nixffi.Value) -> nixffi.Value:
        """`v` as the traversal sees it: auto-called when it is a function (walking to a set)."""
        return self._call(v) if classify(v, True) == Kind.FUNCTION else v

    # ---- events ---------------------------------------------------------------------------
    def _attrset(self, v: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        names = expand = attr_names_json(v)
        invalid: list[str] = []
        if not is_utf8(names):  # some name is bytes that are not UTF-8: see names.py
            names, valid, invalid = split_names([n.encode("utf-8", "surrogateescape") for n in v.names()])
            expand = orjson.dumps(valid)
        out.events.append(attrset_event(attr, path, names))
        if expand != b"[]":
            out.expansions.append(b"[" + orjson.dumps(path) + b"," + expand + b"]")
        for name in invalid:
            out.errors += 1
            out.events.append(error_event((attr + "." if path else "") + quote_attr(name), path + (name,), INVALID_NAME))

    def _error(self, path: tuple[str, ...], attr: str, error: Exception, out: BatchOutcome) -> None:
        if not isinstance(error, NixError):  # reading the .drv or writing a GC root
            message = f"error: {error}"
        elif not error.out_of_memory:
            message = error.message
        else:  # the GC heap cap: this worker's heap is spent; no event, the master decides
            out.out_of_memory = error.message
            return
        out.errors += 1
        out.events.append(error_event(attr, path, message))

    def _derivation(self, v: nixffi.Value, path: tuple[str, ...], attr: str, out: BatchOutcome) -> None:
        fields, flags = derivation_json(v)
        config = self.config
        meta: bytes | None = None
        more: list[tuple[str, bytes]] = []  # evix's newer members, after the original ones
        if config.meta and (flags & HAS_META or config.nix_eval_jobs):
            meta, meta_error = self._meta(v, flags)
            if meta_error is not None:
                more.append(("metaError", meta_error))
        constituents = None
        if config.constituents and flags & HAS_AGGREGATE:
            aggregate = job_fields.eval_jobs_constituents(v)
            if aggregate is not None:
                more += [(k, orjson.dumps(x)) for k, x in aggregate.items()]
        elif flags & HAS_AGGREGATE and not config.nix_eval_jobs:
            constituents = self._constituents(v)
        if self.apply is not None:
            more.append(("extraValue", job_fields.extra_value(v, self.apply)))
        input_drvs = None
        if not config.no_instantiate and (config.show_input_drvs or config.gc_roots_dir or flags & HAS_FEATURES):
            d = orjson.loads(b"{" + fields + b"}")
            drv_path = d["drvPath"]
            drv = drvfile.read(drv_path) if config.show_input_drvs or flags & HAS_FEATURES else None  # read once
            if drv is not None and flags & HAS_FEATURES:
                if config.nix_eval_jobs and d["system"] != drv.platform:  # theirs is the .drv's platform
                    d["system"] = drv.platform
                    fields = orjson.dumps(d)[1:-1]
                features = drv.required_system_features()
                if features:
                    more.append(("requiredSystemFeatures", orjson.dumps(features)))
            if drv is not None and config.show_input_drvs:
                input_drvs = orjson.dumps(drv.input_drvs)
            if config.gc_roots_dir:
                gcroots.add_root(config.gc_roots_dir, drv_path)
        out.derivations += 1
        out.events.append(derivation_event(attr, path, fields, meta, input_drvs, constituents, more=more))

    def _meta(self, v: nixffi.Value, flags: int) -> tuple[bytes | None, bytes | None]:
        """(meta, metaError) as JSON: evix's lenient meta and what of it failed, or
        nix-eval-jobs' meta (null when there is none; a failure is the job's error)."""
        if self.config.nix_eval_jobs:
            return orjson.dumps(strict_meta(v) if flags & HAS_META else None), None
        meta, meta_error = lenient_meta(v)
        return meta, orjson.dumps(meta_error) if meta_error is not None else None

    @staticmethod
    def _constituents(v: nixffi.Value) -> bytes | None:
        """Hydra aggregates: drvPaths of derivation constituents, names of string ones, as JSON."""
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
        return orjson.dumps(result)
