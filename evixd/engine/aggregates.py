"""Hydra aggregates that name their constituents (`--constituents`), resolved once every
other job is known, as nix-eval-jobs resolves them.

A string constituent is another job's `attr`; with `_hydraGlobConstituents = true` a name
that is not a job is a shell pattern over job names (the aggregate itself excluded). A
missing name is `NAME: does not exist`, a pattern without a match `PATTERN: constituent glob
pattern had no matches`, a constituent that failed `NAME: <its error>`: one line each, in
the aggregate's `error`. Aggregates depending on each other in a cycle all get
`Dependency cycle: A <-> B`; an aggregate depending on one of them gets that as the
constituent's error; the others are unaffected (nix-eval-jobs skips them all).

Each aggregate comes after the aggregates it depends on, so a rewritten constituent's new
drvPath is the one that goes into its parents.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Resolved:
    """One aggregate: the jobs it depends on and why some could not be used."""

    name: str
    children: list[str] = field(default_factory=list)  # sorted job names
    broken: dict[str, str] = field(default_factory=dict)  # name or pattern -> error


def resolve(job: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> Resolved:
    """The named constituents of aggregate `job` against `jobs` (name -> {drvPath} or {error})."""
    name = job["attr"]
    out = Resolved(name)
    children: set[str] = set()
    for wanted in job.get("namedConstituents", []):
        if wanted in jobs:
            _take(wanted, jobs[wanted], children, out.broken)
        elif not job.get("globConstituents"):
            out.broken[wanted] = "does not exist"
        else:
            matched = [n for n in sorted(jobs) if n != name and fnmatch.fnmatchcase(n, wanted)]
            usable = [n for n in matched if _take(n, jobs[n], children, out.broken)]
            if not usable:
                out.broken[wanted] = "constituent glob pattern had no matches"
    out.children = sorted(children)
    return out


def _take(name: str, job: dict[str, Any], children: set[str], broken: dict[str, str]) -> bool:
    if "error" in job:
        broken[name] = job["error"]
        return False
    children.add(name)
    return True


def order(resolved: list[Resolved]) -> tuple[list[Resolved], dict[str, str]]:
    """The aggregates, each after those it depends on (by name otherwise), and the cycle
    message of each aggregate that is part of a dependency cycle."""
    by_name = {r.name: r for r in resolved}
    deps = {r.name: [c for c in r.children if c in by_name and c != r.name] for r in resolved}
    cycles: dict[str, str] = {}
    for component in _components(deps):
        if len(component) > 1:
            a, b = _back_edge(sorted(component), deps)
            for member in component:
                cycles[member] = f"Dependency cycle: {a} <-> {b}"
    done: set[str] = set()
    ordered: list[Resolved] = []

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for child in deps[name]:
            visit(child)
        ordered.append(by_name[name])

    for name in sorted(by_name):
        visit(name)
    return ordered, cycles


def _components(deps: dict[str, list[str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(deps):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(deps[node]):
                work.append((node, i + 1))
                child = deps[node][i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _back_edge(members: list[str], deps: dict[str, list[str]]) -> tuple[str, str]:
    """The first edge found closing the cycle in a depth-first walk from the smallest member
    (nix-eval-jobs' report): (the aggregate reached again, the one reaching it)."""
    inside = set(members)
    path: list[str] = []
    seen: set[str] = set()

    def walk(node: str) -> tuple[str, str] | None:
        path.append(node)
        seen.add(node)
        for child in deps[node]:
            if child in path:
                return child, node
            if child in inside and child not in seen:
                hit = walk(child)
                if hit:
                    return hit
        path.pop()
        return None

    hit = walk(members[0])
    assert hit is not None, "a strongly connected component of more than one node has a cycle"
    return hit
