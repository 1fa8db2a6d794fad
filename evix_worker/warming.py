"""What a template evaluates before it forks, so that its forks share it (template.py).

First, before the first fork: the drvPath of the first derivation among the root's children,
which forces what most packages share (a stdenv and its bootstrap). Then, on the master's
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

import nixffi
from nixffi.traverse import Kind, classify_child
from protocol import template
from protocol.config import EvalConfig

from .serve import cap_gc_heap, in_flight_marker


class Warmer:
    def __init__(self, root: nixffi.Value, config: EvalConfig) -> None:
        self.root = root
        self.config = config
        self.marker = in_flight_marker()
        self.step = -1

    def first(self) -> None:
        """Forces the drvPath of the first child of the root that is a derivation."""
        self._begin()
        try:
            names = self.root.names()
        except nixffi.NixError:
            names = []
        for name in names[:8]:
            if self._derivation(self.root, name):
                break
        cap_gc_heap(self.config)

    def request(self, path: list[str]) -> int:
        """Forces the drvPath of the derivation at `path`; returns the step marked."""
        self._begin()
        try:
            parent = self.root
            for name in path[:-1]:
                parent = parent.get(name)
            if path:
                self._derivation(parent, path[-1])
        except nixffi.NixError:
            pass
        cap_gc_heap(self.config)
        return self.step

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
