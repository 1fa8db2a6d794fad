"""System routing: which queued work goes to which workers, when some own only some systems.

A worker owns a set of systems (a remote's `--remote ENDPOINT SYSTEMS N`) or any (a local
worker, a remote with an empty list). A derivation's system is known only once it has been
evaluated, so a derivation a worker does not own is *rejected*: the item is remembered as
being of that system (`known`) and queued in that system's lane, which only its owners take
from. When no live worker owns it, the run cannot complete, and says so.

Routing up front: once derivations under a set came back of one system, the set's other
children (and the children of its sibling sets) are queued in that system's lane from the
start (`hints`, learned per parent set; a set with several systems has no hint). Until
something is known under a set, its children are handed out a few at a time (PROBE), so
that a worker owning another system rejects a few items, not a whole batch.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

Path = tuple[str, ...]
Chunk = tuple[Path, list[str] | None]
Item = tuple[Path, str | None]
Systems = frozenset[str] | None
"""The systems a worker owns; None: any."""

PROBE = 4  # children of a set of unknown system in one batch
_MIXED = ""  # a hint for a parent whose derivations are of several systems: none


@dataclass
class Routes:
    lanes: dict[str, collections.deque[Chunk]] = field(default_factory=dict)
    known: dict[Item, str] = field(default_factory=dict)
    hints: dict[Path, str] = field(default_factory=dict)
    owners: collections.Counter[Systems] = field(default_factory=collections.Counter)
    active: bool = False
    """Some worker owns only some systems: without one, nothing is ever routed."""

    def register(self, systems: Systems) -> None:
        self.owners[systems] += 1
        self.active = self.active or systems is not None

    def unregister(self, systems: Systems) -> None:
        self.owners[systems] -= 1
        if self.owners[systems] <= 0:
            del self.owners[systems]

    def owned(self, system: str) -> bool:
        """Some live worker takes derivations of `system`."""
        return any(systems is None or system in systems for systems in self.owners)

    def learn(self, parent: Path, system: str) -> bool:
        """Records a derivation of `system` under `parent`; True when that gave `parent` a new
        hint (queued work may now be routed up front)."""
        seen = self.hints.get(parent)
        if seen is None:
            self.hints[parent] = system
            return self.owned(system)
        if seen != system:
            self.hints[parent] = _MIXED
        return False

    def hint(self, path: Path) -> str | None:
        """The system the children of `path` are expected to be of: the hint of the nearest
        set on the way to the root that has one."""
        for depth in range(len(path), -1, -1):
            seen = self.hints.get(path[:depth])
            if seen is not None:
                return seen or None
        return None

    def unknown(self, path: Path) -> bool:
        """Nothing is known yet of the systems under `path` (nor of any set above it): the
        queue hands out only a few of its children at a time until one comes back."""
        return all(path[:depth] not in self.hints for depth in range(len(path), -1, -1))

    def split(self, path: Path, names: list[str] | None) -> list[tuple[str | None, list[str] | None]]:
        """Where the items of chunk (path, names) are queued: [(lane system or None for
        every worker, names)], known items in their system's lane."""
        hinted = self.hint(path)
        if hinted is not None and not self.owned(hinted):
            hinted = None
        out: dict[str | None, list[str]] = {}
        if names is None:
            lane = self.known.get((path, None), hinted)
            parts: list[tuple[str | None, list[str] | None]] = [(lane, None)]
        else:
            if self.known:
                for name in names:
                    out.setdefault(self.known.get((path, name), hinted), []).append(name)
            else:
                out[hinted] = names
            parts = list(out.items())  # type: ignore[arg-type]
        for lane, _ in parts:
            if lane is not None:
                self.lanes.setdefault(lane, collections.deque())
        return parts
