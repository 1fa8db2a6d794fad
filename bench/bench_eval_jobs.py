"""The benchmark of issues 12 and 15: `evix-eval-jobs` against `evix eval` on the package set
of 10,000, and the cost of `--meta`, as ratios from one interleaved run.

    python bench/bench_eval_jobs.py [--repeat N] [--before DIR]

Commands (all one-shot, no daemon, stdout to a file):

  eval            evix eval --no-daemon --file pkgset-10000.nix --workers W
  eval-jobs       evix-eval-jobs pkgset-10000.nix --workers W
  eval --meta, eval-jobs --meta   the same with --meta

With `--before DIR` (a checkout of an older commit with its nixffi built), `evix eval` and
`evix eval --meta` of that checkout are timed in the same rounds, so the cost of --meta can
be compared before and after. Each run's output is checked (9,988 derivations, 12 errors).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import measure
from generate import DEFAULT_OUT, generate

REPO = Path(__file__).resolve().parent.parent
INPUT = "pkgset-10000"


def _commands(file: Path, before: Path | None) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    py = sys.executable
    here = dict(os.environ, PYTHONPATH=str(REPO))
    cmds: dict[str, tuple[list[str], dict[str, str] | None]] = {}
    for w in ("1", "2"):
        cmds[f"eval {w}w"] = ([py, "-m", "evix_client", "eval", "--no-daemon", "--file", str(file), "--workers", w], here)
        cmds[f"eval-jobs {w}w"] = ([py, "-m", "evix_client", "eval-jobs", str(file), "--workers", w], here)
    cmds["eval --meta 1w"] = (cmds["eval 1w"][0] + ["--meta"], here)
    cmds["eval-jobs --meta 1w"] = (cmds["eval-jobs 1w"][0] + ["--meta"], here)
    if before is not None:
        old = dict(os.environ, PYTHONPATH=str(before))
        cmds["before: eval 1w"] = (cmds["eval 1w"][0], old)
        cmds["before: eval --meta 1w"] = (cmds["eval --meta 1w"][0], old)
    return cmds


def _counts(path: Path) -> tuple[int, int]:
    """(derivations, errors) in an output file of either format."""
    drvs = errors = 0
    for line in path.read_bytes().splitlines():
        event = json.loads(line)
        drvs += "drvPath" in event and "error" not in event
        errors += "error" in event
    return drvs, errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7, metavar="N", help="timed runs per command (default 7)")
    p.add_argument("--before", type=Path, help="an older checkout to time evix eval (--meta) of, for comparison")
    ns = p.parse_args(argv)
    inputs = {i.name: i for i in generate(DEFAULT_OUT)}
    inp = inputs[INPUT]
    cmds = _commands(DEFAULT_OUT / inp.file, ns.before)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    cpu: dict[str, list[float]] = {name: [] for name in cmds}
    with tempfile.TemporaryDirectory(prefix="evix-bench-jobs-") as tmp:
        out = Path(tmp) / "out"
        for name, (cmd, env) in cmds.items():  # check and warm up
            measure.run(cmd, out, env)
            got = _counts(out)
            if got != (inp.derivations, inp.errors):
                sys.exit(f"bench: {name} gave {got[0]} derivations and {got[1]} errors, "
                         f"expected {inp.derivations} and {inp.errors}")
        for _ in range(ns.repeat):
            for name, (cmd, env) in cmds.items():
                timing = measure.run(cmd, out, env)
                times[name].append(timing.seconds)
                cpu[name].append(timing.cpu_seconds)
    med = {name: statistics.median(t) for name, t in times.items()}
    cmed = {name: statistics.median(t) for name, t in cpu.items()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{INPUT}, median of {ns.repeat} runs, {os.cpu_count()} CPUs, load average now {load}\n")
    print("| command | median s | min–max s | CPU s (median) |\n|---|---:|---|---:|")
    for name, t in times.items():
        print(f"| {name} | {med[name]:.3f} | {min(t):.3f}–{max(t):.3f} | {cmed[name]:.3f} |")
    rows = [(f"eval-jobs / eval, {w}", f"eval-jobs {w}", f"eval {w}", "≤ 1.05×") for w in ("1w", "2w")]
    rows += [("eval --meta / eval, 1w", "eval --meta 1w", "eval 1w", "as before"),
             ("eval-jobs --meta / eval-jobs, 1w", "eval-jobs --meta 1w", "eval-jobs 1w", "—")]
    if ns.before is not None:
        rows.append(("before: eval --meta / eval, 1w", "before: eval --meta 1w", "before: eval 1w", "—"))
    print("\n| ratio | wall (medians) | CPU (medians) | target |\n|---|---:|---:|---:|")
    for label, a, b, target in rows:
        print(f"| {label} | {med[a] / med[b]:.3f}× | {cmed[a] / cmed[b]:.3f}× | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
