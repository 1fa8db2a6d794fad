"""Markdown tables for run.py's results (kept apart so the measuring code stays short)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from run import Measured

LABELS = {"ref": "reference", "ref-rw": "reference rw", "evix-1w": "evix 1w", "evix-2w": "evix 2w"}


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def _largest(m: Measured, config: str) -> int:
    return max(t.max_rss_kib for t in m.timings[config])


def _rss_cell(m: Measured) -> str:
    parts = [_mib(_largest(m, "ref"))]
    for config in ("evix-1w", "evix-2w"):
        cell = _mib(_largest(m, config))
        if config in m.memory:
            cell += f" (Σ {_mib(m.memory[config].peak_pss_kib)})"
        parts.append(cell)
    return " / ".join(parts)


def main_table(results: list[Measured], targets: dict[str, float]) -> list[str]:
    rows = [
        "| input | reference s | evix 1w s | ratio | evix 2w s | ratio | peak RSS MiB: ref / 1w / 2w | target (2w) | met? |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for m in results:
        ref, one, two = m.median("ref"), m.median("evix-1w"), m.median("evix-2w")
        target = targets.get(m.input.name)
        met = "—" if target is None else ("yes" if two / ref <= target else "no")
        rows.append(
            f"| {m.input.name} | {ref:.3f} | {one:.3f} | {one / ref:.1f}× | {two:.3f} | {two / ref:.1f}× "
            f"| {_rss_cell(m)} | {'—' if target is None else f'≤ {target:g}×'} | {met} |"
        )
    return rows


def rw_table(results: list[Measured]) -> list[str]:
    rows = [
        "| input | reference rw s | evix 1w / ref rw | evix 2w / ref rw | ref rw / ref |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in results:
        rw = m.median("ref-rw")
        rows.append(f"| {m.input.name} | {rw:.3f} | {m.median('evix-1w') / rw:.2f}× "
                    f"| {m.median('evix-2w') / rw:.2f}× | {rw / m.median('ref'):.1f}× |")
    return rows


def detail_table(results: list[Measured]) -> list[str]:
    rows = [
        "| input | command | median s | min–max s | CPU s | largest process MiB | Σ RSS MiB | Σ PSS MiB | processes |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        for config, runs in m.timings.items():
            secs = [t.seconds for t in runs]
            cpu = statistics.median(t.cpu_seconds for t in runs)
            mem = m.memory.get(config)
            tree = (f"{_mib(mem.peak_rss_kib)} | {_mib(mem.peak_pss_kib)} | {mem.processes}" if mem
                    else f"{_mib(_largest(m, config))} | — | 1" if config.startswith("ref") else "— | — | —")
            rows.append(f"| {m.input.name} | {LABELS[config]} | {statistics.median(secs):.3f} "
                        f"| {min(secs):.3f}–{max(secs):.3f} | {cpu:.2f} | {_mib(_largest(m, config))} | {tree} |")
    return rows


def render(results: list[Measured], environment: str, targets: dict[str, float]) -> str:
    lines = [
        f"Environment: {environment}.",
        "",
        *main_table(results, targets),
        "",
        "Ratios are evix's median wall time over the reference's (`nix-instantiate --eval --strict`,",
        "read-only: it computes every drvPath but writes no .drv file). Peak RSS: the largest single",
        "process (os.wait4), and in parentheses the peak of the PSS summed over evix's process tree",
        "(master and workers, sampled from /proc every 10 ms in a separate run).",
        "",
        "Against a reference that also writes and registers every .drv, as evix does (`--read-write-mode`,",
        "run with MALLOC_TRIM_THRESHOLD_ set, without which its time swings 3-fold from run to run):",
        "",
        *rw_table(results),
        "",
        "Details (CPU s = user + system of the process and its workers):",
        "",
        *detail_table(results),
        "",
        "Checks:",
        "",
        *(f"- {m.input.name}: {m.check}" for m in results),
    ]
    return "\n".join(lines)
