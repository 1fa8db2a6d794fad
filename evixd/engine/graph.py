"""A warm derivation graph: what one evaluation produced, kept for queries and diffs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from protocol.events import Derivation, EventKind, event_from_json, event_kind
from protocol.query import Filter
from protocol.rpc_results import Diff, DiffEntry, DiffError


@dataclass(slots=True)
class DrvRecord:
    """One derivation: the fields queries filter on, plus its event line as printed."""

    attr: str
    attr_path: tuple[str, ...]
    name: str
    system: str
    drv_path: str
    line: bytes
    meta_error: bool = False


@dataclass
class Graph:
    derivations: dict[str, DrvRecord] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _sorted: list[DrvRecord] | None = None

    def add_lines(self, data: bytes) -> list[dict[str, Any]]:
        """Adds the events of NDJSON `data`; returns them decoded."""
        decoded = []
        for line in data.splitlines():
            if not line:
                continue
            d = orjson.loads(line)
            decoded.append(d)
            kind = event_kind(d)
            if kind is EventKind.DERIVATION:
                self.derivations[d["attr"]] = DrvRecord(
                    d["attr"], tuple(d["attrPath"]), d["name"], d["system"], d["drvPath"], line, "metaError" in d
                )
            elif kind is EventKind.ERROR:
                self.errors[d["attr"]] = d["error"]
        self._sorted = None
        return decoded

    def sorted_records(self) -> list[DrvRecord]:
        if self._sorted is None:
            self._sorted = sorted(self.derivations.values(), key=lambda r: r.attr_path)
        return self._sorted

    def select(self, flt: Filter) -> Iterator[DrvRecord]:
        """Records matching `flt`, ordered by attribute path."""
        c = flt.compile()
        records = self.sorted_records()
        if c.is_everything:
            return iter(records)
        return (r for r in records if c.matches(r.attr, r.attr_path, r.name, r.system, r.drv_path, r.meta_error))

    def query(self, flt: Filter) -> list[Derivation]:
        return [event_from_json(orjson.loads(r.line)) for r in self.select(flt)]  # type: ignore[misc]


def diff_graphs(old: Graph, new: Graph) -> Diff:
    """added/removed: derivations by attr; changed: same attr, new drvPath; errors: the new run's errors."""

    def entry(r: DrvRecord, old_drv_path: str | None = None) -> DiffEntry:
        return DiffEntry(r.attr, r.attr_path, r.name, r.system, r.drv_path, old_drv_path)

    added = [entry(r) for a, r in sorted(new.derivations.items()) if a not in old.derivations]
    removed = [entry(r) for a, r in sorted(old.derivations.items()) if a not in new.derivations]
    changed = [
        entry(r, old.derivations[a].drv_path)
        for a, r in sorted(new.derivations.items())
        if a in old.derivations and old.derivations[a].drv_path != r.drv_path
    ]
    errors = [DiffError(a, e) for a, e in sorted(new.errors.items())]
    return Diff(added, removed, changed, errors)
