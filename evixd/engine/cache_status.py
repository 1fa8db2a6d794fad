"""`--check-cache-status`: for a derivation, what Nix would have to build or substitute to
have its outputs, found the way Nix's Store::queryMissing finds it.

From the job's outputs: an output valid in the store needs nothing; a derivation whose
missing outputs are all substitutable (and that allows substitutes) gets them substituted,
and then what they refer to, recursively; otherwise it must be built, and its inputs are
looked at the same way. A missing path that nothing provides is unknown.

    cacheStatus        local (nothing to do), cached (only substitutions), notBuilt
    neededBuilds       drvPaths to build, dependencies first (as Nix's topoSortPaths reversed)
    neededSubstitutes  output paths to substitute, sorted by name then path

Facts are shared by all jobs of a run: each .drv is parsed once, each path's validity asked
once (in batches, of the Nix store process), each narinfo fetched once. Derivations whose
outputs are not known statically (floating content-addressed) count as to be built: no
realisations are looked up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from protocol import aterm
from protocol.narinfo import NarInfo, path_name

from .store_service import StoreService
from .substituters import Substituters


Target = tuple[str, "tuple[str, ...] | None"]
"""(drvPath, output names) to have built outputs of, or (store path, None) to have a path."""
ALL: tuple[str, ...] = ("*",)  # every output of the derivation


@dataclass
class Missing:
    will_build: set[str] = field(default_factory=set)
    will_substitute: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)


class CacheStatus:
    """The facts of one run and the queries over them."""

    def __init__(self, store: StoreService, substituters: Substituters, use_substitutes: bool = True) -> None:
        self.store = store
        self.substituters = substituters
        self.use_substitutes = use_substitutes
        self._valid: dict[str, bool] = {}
        self._drvs: dict[str, aterm.Derivation] = {}

    @classmethod
    def for_store(cls, store: StoreService) -> CacheStatus:
        settings = store.settings
        subs = Substituters(settings.get("substituters", []), settings.get("storeDir", "/nix/store"))
        return cls(store, subs, settings.get("useSubstitutes", True))

    # ---- facts ----------------------------------------------------------------------
    async def _learn_validity(self, paths: list[str]) -> None:
        unknown = list(dict.fromkeys(p for p in paths if p not in self._valid))
        if unknown:
            self._valid.update(zip(unknown, await self.store.valid(unknown)))

    def _drv(self, path: str) -> aterm.Derivation:
        drv = self._drvs.get(path)
        if drv is None:
            drv = self._drvs[path] = aterm.read(path)
        return drv

    async def _narinfos(self, paths: list[str]) -> dict[str, NarInfo | None]:
        found: dict[str, NarInfo | None] = {}

        async def one(p: str) -> None:
            found[p] = await self.substituters.lookup(p) if self.use_substitutes else None

        async with trio.open_nursery() as nursery:
            for p in dict.fromkeys(paths):
                nursery.start_soon(one, p)
        return found

    # ---- queryMissing ---------------------------------------------------------------
    async def missing(self, drv_path: str) -> Missing:
        """What it takes to have every output of `drv_path`, level by level: each level's
        validity, .drvs and narinfos are learnt together before it is decided."""
        m = Missing()
        seen: set[Target] = set()
        level: list[Target] = [(drv_path, ALL)]
        while level:
            level = [t for t in dict.fromkeys(level) if t not in seen]
            seen.update(level)
            await self._learn_validity([p for p, _ in level])
            built = [(p, outs) for p, outs in level if outs is not None and self._valid[p]]
            m.unknown.update(p for p, outs in level if outs is not None and not self._valid[p])
            opaque = [p for p, outs in level if outs is None and not self._valid[p]]
            wanted = {p: self._wanted(p, outs) for p, outs in built}
            await self._learn_validity([o for outs in wanted.values() for o in outs if o])
            invalid = {p: [o for o in outs if o and not self._valid[o]] for p, outs in wanted.items()}
            substitutable = [p for p in invalid if invalid[p] and self._drv(p).known_output_paths
                             and self._drv(p).substitutes_allowed()]
            infos = await self._narinfos([o for p in substitutable for o in invalid[p]] + opaque)
            level = []
            for p, _ in built:
                drv = self._drv(p)
                if drv.known_output_paths and not invalid[p]:
                    continue
                if p in substitutable and all(infos[o] for o in invalid[p]):
                    level += [(o, None) for o in invalid[p]]
                else:
                    m.will_build.add(p)
                    level += [(i, tuple(outs)) for i, outs in drv.input_drvs.items()]
            for p in opaque:
                info = infos[p]
                if info is None:
                    m.unknown.add(p)
                else:
                    m.will_substitute.add(p)
                    level += [(r, None) for r in info.references if r != p]
        return m

    def _wanted(self, drv_path: str, outputs: tuple[str, ...]) -> list[str]:
        """The paths of `outputs` of the .drv (all of them for ALL), "" when not known statically."""
        drv_outputs = self._drv(drv_path).outputs
        names = drv_outputs if outputs == ALL else [o for o in outputs if o in drv_outputs]
        return [drv_outputs[o].path for o in names]

    async def fields(self, drv_path: str) -> dict[str, Any]:
        """cacheStatus, neededBuilds and neededSubstitutes of one derivation."""
        m = await self.missing(drv_path)
        status = "notBuilt" if m.will_build or m.unknown else "cached" if m.will_substitute else "local"
        return {"cacheStatus": status, "neededBuilds": self._dependencies_first(m.will_build),
                "neededSubstitutes": sorted(m.will_substitute, key=lambda p: (path_name(p), p))}

    def _dependencies_first(self, drvs: set[str]) -> list[str]:
        """Nix's topoSortPaths (referrers first, references being a .drv's inputs), reversed."""
        order: list[str] = []
        done: set[str] = set()

        def visit(p: str) -> None:
            done.add(p)
            refs = set(self._drv(p).input_drvs) | set(self._drv(p).input_srcs)
            for r in sorted(refs & drvs, key=_base):
                if r not in done and r != p:
                    visit(r)
            order.append(p)

        for p in sorted(drvs, key=_base):
            if p not in done:
                visit(p)
        return order


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]
