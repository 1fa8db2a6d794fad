"""Markdown tables for realistic.py's results (kept apart so the measuring code stays short)."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realistic import Results

TARGETS = {"2w / 1w": 0.55, "2w mem / 2w": 1.15, "1w / ref": 1.05}  # issue 8, for the new evix


def _revision(evix: str) -> str:
    """The commit of the checkout an evix executable belongs to (…/.venv/bin/evix), read-only."""
    root = Path(evix).parent.parent.parent
    git = ["git", "--no-optional-locks", "-C", str(root)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return f"{evix} (no git checkout)"
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return f"{head.stdout.strip()}{' with uncommitted changes' if dirty.stdout.strip() else ''} ({root})"


def environment(nix: str, evixes: dict[str, str], ns: argparse.Namespace) -> str:
    version = subprocess.run([nix, "--version"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    who = "; ".join(f"{name} evix {_revision(path)}" for name, path in evixes.items())
    return (f"{version}; {who}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
            f"load average at start {load}; --max-memory {ns.max_memory} for the mem runs; "
            f"median of {ns.repeat} runs")


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return fmt.format(min(values)) + "–" + fmt.format(max(values))


def detail_table(res: Results) -> list[str]:
    rows = ["| command | median s | min–max s | CPU s | largest process MiB | workers started | derivations "
            "| errors | same drvPaths as the reference |",
            "|---|---:|---|---:|---:|---|---:|---:|---|"]
    for c in res.commands:
        runs = res.runs[c.key]
        secs = [r.timing.seconds for r in runs]
        rss = max(r.timing.max_rss_kib for r in runs)
        cells = ["—"] * 4
        if c.workers:
            started = [r.started for r in runs]
            same = sum(r.same_set for r in runs)
            lost = [r.lost for r in runs]
            cells = [f"{statistics.median(started):g} ({_spread(started, '{:d}')})",
                     f"{statistics.median(r.derivations for r in runs):g}",
                     f"{statistics.median(r.errors for r in runs):g}",
                     f"{same} of {len(runs)} runs" + ("" if same == len(runs) else f" (lost {_spread(lost, '{:d}')})")]
        rows.append(f"| {c.key} | {statistics.median(secs):.2f} | {_spread(secs)} | {res.median(c.key, 'cpu_seconds'):.2f} "
                    f"| {_mib(rss)} | {' | '.join(cells)} |")
    return rows


RATIOS = {  # name -> (numerator, denominator) commands, "{v}" the evix version
    "2w / 1w": ("{v}-2w", "{v}-1w"),
    "2w mem / 2w": ("{v}-2w-mem", "{v}-2w"),
    "1w mem / 1w": ("{v}-1w-mem", "{v}-1w"),
    "1w / ref": ("{v}-1w", "ref"),
    "1w / ref rw": ("{v}-1w", "ref-rw"),
}


def ratio_table(res: Results, versions: list[str]) -> list[str]:
    def ratio(name: str, v: str, what: str) -> float:
        num, den = (k.format(v=v) for k in RATIOS[name])
        return res.median(num, what) / res.median(den, what)

    head = " | ".join(f"{v} wall | {v} CPU" for v in versions)
    rows = [f"| ratio of medians | {head} | target (issue 8, wall) | new meets it? |",
            "|---|" + "---:|---:|" * len(versions) + "---:|---|"]
    for name in RATIOS:
        target = TARGETS.get(name)
        met = "—" if target is None else ("yes" if ratio(name, "new", "seconds") <= target else "no")
        if name == "2w mem / 2w" and not all(r.same_set for r in res.runs["new-2w-mem"]):
            met += " (and derivations lost)"
        cells = " | ".join(f"{ratio(name, v, 'seconds'):.2f}× | {ratio(name, v, 'cpu_seconds'):.2f}×" for v in versions)
        rows.append(f"| {name} | {cells} | {'—' if target is None else f'≤ {target:g}×'} | {met} |")
    return rows


def new_old_table(res: Results) -> list[str]:
    rows = ["| command | new / old, wall | new / old, CPU |", "|---|---:|---:|"]
    for suffix in ("1w", "2w", "1w-mem", "2w-mem"):
        new, old = f"new-{suffix}", f"old-{suffix}"
        rows.append(f"| evix {suffix} | {res.median(new) / res.median(old):.2f}× "
                    f"| {res.median(new, 'cpu_seconds') / res.median(old, 'cpu_seconds'):.2f}× |")
    return rows


def first_derivation(res: Results) -> str:
    first, load = res.median("nix-first"), res.median("nix-load")
    cpu = res.median("nix-first", "cpu_seconds")
    return (f"A fresh `nix-instantiate` needs {first:.2f} s (CPU {cpu:.2f} s) to its first derivation "
            f"(`{res.first_attr.lstrip('.').replace(chr(34), '')}`, the first one evix reports), of which "
            f"{load:.2f} s to start and load the set (its root's attribute names); the rest, {first - load:.2f} s, "
            "is the stdenv bootstrap and that package.")


def memory_limit_line(res: Results, ns: argparse.Namespace) -> str:
    parts = []
    for c in res.commands:
        if c.workers and c.key.endswith("-mem"):
            runs = res.runs[c.key]
            restarts = [r.started - c.workers for r in runs]
            same = sum(r.same_set for r in runs)
            parts.append(f"{c.key} restarts {statistics.median(restarts):g} ({_spread(restarts, '{:d}')})"
                         f"{'' if min(restarts) >= 10 else ' (fewer than 10!)'}, the unlimited set in {same} of {len(runs)} runs")
    return f"Under `--max-memory {ns.max_memory}` (workers started less the worker count): " + "; ".join(parts) + "."


def render(res: Results, environment_line: str, ns: argparse.Namespace, evixes: dict[str, str]) -> str:
    versions = list(evixes)
    inp = res.input
    lines = [f"Environment: {environment_line}.", "",
             f"Input: `{inp.file}`: {inp.derivations} derivations and {inp.errors} error events expected.", "",
             first_derivation(res), "", *ratio_table(res, versions), "", memory_limit_line(res, ns), ""]
    if "old" in versions:
        lines += [*new_old_table(res), ""]
    lines += ["Every command (CPU s: user + system of the process and its workers; largest process: "
              "ru_maxrss from os.wait4, the peak of the largest single process over all runs; workers "
              "started: median (min–max) of the `worker N ready` lines of evix -vv):", "", *detail_table(res)]
    if res.tree_pss_kib:
        lines += ["", "Peak Σ PSS over the process tree (one separate run each): "
                  + ", ".join(f"{k} {_mib(v)} MiB" for k, v in res.tree_pss_kib.items())]
    lines += ["", "Checks: " + ("all unlimited runs gave the reference's drvPaths" if not res.failures
                                else "; ".join(res.failures))]
    return "\n".join(lines)
