"""A run as nix-eval-jobs makes it (`evix-eval-jobs`): the same engine, its lines instead of
evix's events.

Events are turned into nix-eval-jobs lines as they arrive (protocol.eval_jobs). With one
worker the lines are printed in ascending attrPath order, as nix-eval-jobs' single worker
prints them, once the evaluation is done; with more they stream as they come. Aggregates
that name their constituents (`--constituents`) are held back, resolved once every other
job is known, and printed last, each after the aggregates it depends on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from protocol.config import EvalConfig
from protocol.eval_jobs import JobFormat, encode, job_name, path_order

from evixd.worker_launch import SpawnedWorker

from . import aggregates
from .errors import InputError
from .run import run_evaluation
from .scheduler import Summary
from .store_service import StoreService

log = logging.getLogger("evix.eval_jobs")

Write = Callable[[bytes], Any]


@dataclass
class JobsCollector:
    """Receives evix's NDJSON from the engine and writes nix-eval-jobs lines."""

    config: EvalConfig
    write: Write
    flush: Callable[[], Any] = lambda: None
    verbose: bool = False
    format: JobFormat = field(init=False)
    sorted_output: bool = field(init=False)
    pending: list[tuple[tuple[str, ...], bytes]] = field(default_factory=list)  # (order, line) held for sorting
    held: list[dict[str, Any]] = field(default_factory=list)  # aggregates naming constituents, for the end
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {drvPath} or {error}

    def __post_init__(self) -> None:
        self.format = JobFormat.of(self.config)
        self.sorted_output = self.config.workers == 1

    def feed(self, data: bytes) -> None:
        """An event sink for the Scheduler (whole NDJSON lines)."""
        for line in data.splitlines():
            if line:
                self.take(orjson.loads(line))
        if not self.sorted_output:
            self.flush()  # streaming consumers start building while the run goes on

    def take(self, event: dict[str, Any]) -> None:
        job = self.format.job(event)
        if job is None:
            return
        if "error" in job and self.verbose:
            print(f"error: evaluating '{job['attr']}':\n{job['error']}", file=sys.stderr, flush=True)
        if self.config.constituents:
            self.jobs[job["attr"]] = {"error": job["error"]} if "error" in job else {"drvPath": job["drvPath"]}
            if job.get("namedConstituents"):
                self.held.append(job)
                return
        if self.sorted_output:  # encoded now: 10k lines kept as bytes, not dicts the GC keeps walking
            self.pending.append((path_order(job), encode(job)))
        else:
            self.write(encode(job))

    def finish_jobs(self) -> None:
        """Prints the lines held for sorting (the run is over)."""
        self.pending.sort(key=lambda p: p[0])
        for _, line in self.pending:
            self.write(line)
        self.pending.clear()

    async def finish_aggregates(self, store: StoreService | None) -> None:
        """Resolves, rewrites and prints the aggregates held back, each after those it depends on."""
        held = {job["attr"]: job for job in self.held}
        ordered, cycles = aggregates.order([aggregates.resolve(job, self.jobs) for job in self.held])
        for resolved in ordered:
            job = held[resolved.name]
            del job["namedConstituents"]
            error = cycles.get(resolved.name) or self._broken(resolved)
            if error:
                job["error"] = self.jobs[resolved.name]["error"] = error
            else:
                await self._rewrite(job, resolved, store)
            self.write(encode(job))
        self.flush()

    def _broken(self, resolved: aggregates.Resolved) -> str:
        """The aggregate's error: one line per constituent that is missing or failed."""
        broken = dict(resolved.broken)
        broken.update((c, self.jobs[c]["error"]) for c in resolved.children if "error" in self.jobs[c])
        return "".join(f"{name}: {error}\n" for name, error in sorted(broken.items()))

    async def _rewrite(self, job: dict[str, Any], resolved: aggregates.Resolved, store: StoreService | None) -> None:
        children = [self.jobs[c]["drvPath"] for c in resolved.children]
        job["constituents"] = job["constituents"] + children
        if not children or store is None:
            return
        result = await store.rewrite_aggregate(job["drvPath"], children, self.config.gc_roots_dir)
        if "drvPath" in result:
            log.debug("rewrote aggregate derivation %s -> %s", job["drvPath"], result["drvPath"])
            job["drvPath"] = self.jobs[resolved.name]["drvPath"] = result["drvPath"]
            job["outputs"] = dict(job["outputs"], **result["outputs"])
        else:
            log.warning("aggregate '%s' keeps its .drv: %s", resolved.name, result.get("skipped") or result.get("error"))


async def run_eval_jobs(config: EvalConfig, write: Write, flush: Callable[[], Any] = lambda: None, *,
                        spawned: list[SpawnedWorker] | None = None, verbose: bool = False) -> int:
    """Evaluates `config`, writing nix-eval-jobs lines; returns nix-eval-jobs' exit status."""
    collector = JobsCollector(config, write, flush, verbose)
    try:
        summary = await run_evaluation(config, collector.feed, progress=False, spawned=spawned)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    collector.finish_jobs()
    if collector.held:
        async with StoreService(config) as store:
            await collector.finish_aggregates(store)
    flush()
    for line in crash_report(summary):
        print(line, file=sys.stderr)
    return 1 if summary.worker_died_on else 0


def crash_report(summary: Summary) -> list[str]:
    """stderr lines for the attributes a worker died on (nix-eval-jobs would have failed)."""
    lines = []
    for path, reason in summary.worker_died_on:
        hint = " (possible infinite recursion)" if "SIGSEGV" in reason or "stack overflow" in reason else ""
        lines.append(f"error: worker died evaluating '{job_name(path)}': {reason}{hint}")
    return lines
