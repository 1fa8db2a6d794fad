"""Fast answers to `query` from a warm graph, without decoding or re-encoding derivations.

Built once per evaluation: records sorted by attribute path (so every attribute prefix is
one contiguous range, found by bisection), dict indexes on name, drvPath and system, and each
record's NDJSON line pre-escaped as the inside of a JSON string. A query picks the
smallest candidate set the filter allows, checks the remaining criteria on those only,
and joins stored bytes: a prefix over 100k derivations costs about a millisecond.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import orjson

from protocol.events import parse_attr
from protocol.query import Filter

from .graph import DrvRecord, Graph

RECORD_OVERHEAD = 600
"""Bytes a derivation costs beyond twice its line and its escaped copy (the parsed fields,
tuples, dict and index entries); measured with tracemalloc on 100k derivations."""


class _ExactIndex:
    """Value -> record indexes (an int when unique, the common case: far fewer objects)."""

    def __init__(self) -> None:
        self._map: dict[str, int | list[int]] = {}

    def add(self, key: str, i: int) -> None:
        found = self._map.setdefault(key, i)
        if found is not i:
            if isinstance(found, int):
                self._map[key] = [found, i]
            else:
                found.append(i)

    def lookup(self, keys: tuple[str, ...]) -> list[int]:
        """The sorted indexes of records having any of `keys`."""
        hits = [self._map[k] for k in dict.fromkeys(keys) if k in self._map]
        if len(hits) == 1:
            return [hits[0]] if isinstance(hits[0], int) else hits[0]
        return sorted(i for h in hits for i in ((h,) if isinstance(h, int) else h))


class QueryIndex:
    """The derivations of one graph, ready for filtered queries; immutable once built."""

    def __init__(self, graph: Graph) -> None:
        self.records: list[DrvRecord] = graph.sorted_records()  # shared, never modified
        self._paths = [r.attr_path for r in self.records]
        self._escaped = [_escape(r.line) for r in self.records]
        self._exact = {"names": _ExactIndex(), "drv_paths": _ExactIndex(), "systems": _ExactIndex()}
        by_name, by_drv, by_system = self._exact["names"], self._exact["drv_paths"], self._exact["systems"]
        for i, r in enumerate(self.records):
            by_name.add(r.name, i)
            by_drv.add(r.drv_path, i)
            by_system.add(r.system, i)
        self.memory_bytes = sum(2 * len(r.line) + len(e) + RECORD_OVERHEAD for r, e in zip(self.records, self._escaped))

    def __len__(self) -> int:
        return len(self.records)

    def select(self, flt: Filter) -> Sequence[int]:
        """Indexes (in attribute-path order) of the records matching `flt`."""
        candidates, enforced = self._candidates(flt)
        rest = (dataclasses.replace(flt, **{enforced: None}) if enforced else flt).compile()
        if rest.is_everything:
            return candidates
        recs = self.records
        return [
            i for i in candidates
            if rest.matches(recs[i].attr, recs[i].attr_path, recs[i].name, recs[i].system, recs[i].drv_path,
                            recs[i].meta_error)
        ]

    def _candidates(self, flt: Filter) -> tuple[Sequence[int], str | None]:
        """The sorted matches of the most selective indexed criterion, and its Filter field
        (the other criteria are still to be checked on them)."""
        options: list[tuple[Sequence[int], str | None]] = []
        if flt.attr_prefix is not None:
            options.append((self._prefix_indexes(flt.attr_prefix), "attr_prefix"))
        for name, index in self._exact.items():
            keys = getattr(flt, name)
            if keys is not None:
                options.append((index.lookup(keys), name))
        if not options:
            return range(len(self.records)), None
        return min(options, key=lambda o: len(o[0]))

    def _prefix_indexes(self, prefixes: tuple[str, ...]) -> list[int] | range:
        ranges = sorted(self._prefix_range(tuple(parse_attr(p))) for p in prefixes)
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if lo >= hi:
                continue
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        if len(merged) == 1:
            return range(merged[0][0], merged[0][1])
        return [i for lo, hi in merged for i in range(lo, hi)]

    def _prefix_range(self, prefix: tuple[str, ...]) -> tuple[int, int]:
        n = len(prefix)
        lo = bisect.bisect_left(self._paths, prefix)
        hi = bisect.bisect_right(self._paths, False, lo=lo, key=lambda p: p[:n] > prefix)
        return lo, hi

    # ---- answers (JSON bytes) -------------------------------------------------------
    def objects_json(self, indexes: Sequence[int]) -> bytes:
        """The matches as a JSON array of the derivation objects, exactly as `evix eval` printed them."""
        recs = self.records
        if self._is_all(indexes):
            return b"[" + b",".join(r.line for r in recs) + b"]"
        return b"[" + b",".join(recs[i].line for i in indexes) + b"]"

    def ndjson_json(self, indexes: Sequence[int]) -> bytes:
        """The matches as one JSON string holding their NDJSON lines."""
        esc = self._escaped
        if self._is_all(indexes):
            return b'"' + b"".join(esc) + b'"'
        return b'"' + b"".join(esc[i] for i in indexes) + b'"'

    def _is_all(self, indexes: Sequence[int]) -> bool:
        return isinstance(indexes, range) and len(indexes) == len(self.records)


def _escape(line: bytes) -> bytes:
    """`line` plus newline, as the inside of a JSON string literal."""
    return orjson.dumps(line.decode("utf-8", "replace") + "\n")[1:-1]
