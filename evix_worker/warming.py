"""What a template evaluates before it forks, so that its forks share it (template.py).

First, before the first fork: the drvPath of the first derivation among the root's children,
which forces what most packages share (a stdenv and its bootstrap). One is not always enough:
in a nixpkgs-shaped set the first package may be built by a bootstrap stage (nixpkgs' `acl`),
and the stdenv every later package uses is forced only by the next ones, which every fresh
fork then evaluated again: on bench/'s realistic set about 0.2 s of CPU per restart, against
about 0.035 s once they are warmed (bench/restart_rebuild.py). So when the master first replaces a worker (a run without
restarts never waits for it) it asks the template to go on down the root's children
(`settle`, the empty warm request) until a few derivations in a row cost next to nothing:
what they share is in place. Within a budget: no more time than the first one took, no more
memory than half the limit, no more than half of --timeout. Then, on the master's
request, an attribute that made a worker pass the memory limit: a heavy item such as a
package of a set built on its own bootstrap (`pkgsi686Linux.*`, `pkgsStatic.*`), whose
siblings share that bootstrap, so that forks made afterwards have it. Errors are ignored
and nothing is reported: workers evaluate every attribute themselves, so no event changes.

Each warming marks its start in the in-flight word (batch WARMING, item k), from which the
master holds the template to the limit as it would a fresh fork evaluating that item (its
growth since the mark), and to --timeout; past either it kills the template. Nix's GC heap
is capped meanwhile at what a fresh fork may grow to, and afterwards at the limit on top of
what the forks will share.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import nixffi
from nixffi.traverse import Kind, classify_child
from protocol import template
from protocol.config import EvalConfig

from .evaluator import peak_rss_kib
from .serve import cap_gc_heap, in_flight_marker

FIRST_CHILDREN = 64  # of the root's children looked at by the first warming
SETTLED_RUN = 4  # this many cheap derivations in a row: what packages share is forced
CHEAP = 0.05  # a cheap derivation costs less than this share of the first one's time


class Warmer:
    def __init__(self, root: nixffi.Value, config: EvalConfig) -> None:
        self.root = root
        self.config = config
        self.marker = in_flight_marker()
        self.step = -1
        self._children: Iterator[str] = iter(())  # the root's first children not warmed yet
        self._first_cost: float | None = None  # CPU seconds the first derivation took

    def first(self) -> None:
        """Forces the drvPath of the root's first child that is a derivation."""
        self._begin()
        try:
            names = self.root.names()
        except nixffi.NixError:
            names = []
        self._children = iter(names[:FIRST_CHILDREN])
        for name in self._children:
            began = time.process_time()
            if self._derivation(self.root, name):
                self._first_cost = time.process_time() - began
                break
        cap_gc_heap(self.config)

    def request(self, path: list[str]) -> int:
        """Forces the drvPath of the derivation at `path` (empty: settles the first warming);
        returns the step marked."""
        self._begin()
        try:
            if not path:
                self._settle()
            else:
                parent = self.root
                for name in path[:-1]:
                    parent = parent.get(name)
                self._derivation(parent, path[-1])
        except nixffi.NixError:
            pass
        cap_gc_heap(self.config)
        return self.step

    def _settle(self) -> None:
        """Warms the root's next derivations until they cost next to nothing, or the budget
        (see the module's docstring) is spent."""
        if self._first_cost is None:
            return
        budget = _Budget(self.config, self._first_cost)
        for name in self._children:
            began = time.process_time()
            if self._derivation(self.root, name) and budget.spent(time.process_time() - began):
                return

    def _begin(self) -> None:
        self.step += 1
        if self.marker is not None:  # the master watches our growth from now on
            self.marker.batch = template.WARMING
            self.marker.mark(self.step)
        cap_gc_heap(self.config)  # held to the limit while it warms

    @staticmethod
    def _derivation(parent: nixffi.Value, name: str) -> bool:
        """Forces `parent.name`'s drvPath when it is a derivation; True when it was one."""
        try:
            kind, value = classify_child(parent, name.encode("utf-8", "surrogateescape"), False)
            if kind == Kind.DERIVATION and value is not None:
                value.get("drvPath").force()
                return True
        except nixffi.NixError:
            pass
        return False


class _Budget:
    """When settling should stop: fed the CPU time of each derivation warmed, it ends after a
    run of cheap ones, or once they took more time than the first, half of --timeout, or more
    than half the limit of memory (the peak RSS's growth since settling began)."""

    def __init__(self, config: EvalConfig, first_cost: float) -> None:
        self.first_cost = first_cost
        self.spent_time = 0.0
        self.cheap_run = 0
        self.rss_kib = peak_rss_kib()
        self.memory_kib = config.max_memory_mb << 9
        self.time = config.item_timeout / 2 if config.item_timeout is not None else float("inf")

    def spent(self, seconds: float) -> bool:
        self.spent_time += seconds
        self.cheap_run = self.cheap_run + 1 if seconds < CHEAP * self.first_cost else 0
        return (self.cheap_run >= SETTLED_RUN or self.spent_time > min(self.first_cost, self.time)
                or peak_rss_kib() - self.rss_kib > self.memory_kib)
