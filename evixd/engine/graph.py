"""A warm derivation graph: what one evaluation produced, kept for queries and diffs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from protocol.events import Derivation, event_from_json
from protocol.query import Filter


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
            if "drvPath" in d:
                self.derivations[d["attr"]] = DrvRecord(
                    d["attr"], tuple(d["attrPath"]), d["name"], d["system"], d["drvPath"], line, "metaError" in d
                )
            elif "error" in d:
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


@dataclass(frozen=True)
class Diff:
    """How a new evaluation differs from the warm graph."""

    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    errors: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed, "errors": self.errors}


def diff_graphs(old: Graph, new: Graph) -> Diff:
    """added/removed: derivations by attr; changed: same attr, new drvPath; errors: the new run's errors."""

    def brief(r: DrvRecord) -> dict[str, Any]:
        return {"attr": r.attr, "attrPath": list(r.attr_path), "name": r.name, "system": r.system, "drvPath": r.drv_path}

    added = [brief(r) for a, r in sorted(new.derivations.items()) if a not in old.derivations]
    removed = [brief(r) for a, r in sorted(old.derivations.items()) if a not in new.derivations]
    changed = [
        dict(brief(r), oldDrvPath=old.derivations[a].drv_path)
        for a, r in sorted(new.derivations.items())
        if a in old.derivations and old.derivations[a].drv_path != r.drv_path
    ]
    errors = [{"attr": a, "error": e} for a, e in sorted(new.errors.items())]
    return Diff(added, removed, changed, errors)
