"""The realistic benchmark of issue 8: evix on a nixpkgs-shaped set, side by side in one run.

    python bench/realistic.py [--repeat N] [--max-memory MB] [--old-commit C | --old-evix PATH | --no-old]
                              [--new-evix PATH] [--functions] [--timeout S] [--tree-memory]

Input: bench/out/realistic-nofn.nix (generate.py; with --functions realistic.nix, whose
functions below the root only an auto-calling evix reports). Timed, interleaved round-robin
(the order rotates every round, so a load drift hits all alike), `--repeat` times each:

  ref, ref-rw         nix-instantiate --eval --strict on the reference (force.nix), read-only and
                      --read-write-mode (writes the .drv files, as evix does)
  nix load, nix first how long a fresh Nix process takes to load the set, and to its first derivation
  new/old 1w, 2w      evix eval --no-daemon --workers 1 / 2, this checkout's evix and the old one
  ... + mem           the same with --max-memory MB, low enough that workers restart

Every evix run is checked: its derivations (a multiset of drvPaths) against the reference's,
its error events against the expected count, its workers started (from the `worker N ready`
lines of `-vv`). Exits 1 when an unlimited run does not give the reference's set; a limited
run that loses derivations is reported, not a failure (that is what issue 8 fixes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import measure
import realistic_report
from generate import DEFAULT_OUT, Input, generate_realistic
from run import STABLE_MALLOC, find_tools, log

REPO = Path(__file__).resolve().parent.parent
OLD_COMMIT = "0c99a09"  # main before issue 8
DEFAULT_MAX_MEMORY = 40  # MiB of own memory: workers restart 10-14 times a run, 1 or 2 workers; every item fits alone (see README)
READY = re.compile(rb"worker \d+ ready")


@dataclass(frozen=True)
class Command:
    key: str  # e.g. "new-2w-mem"
    argv: list[str]
    env: dict[str, str] | None = None
    workers: int = 0  # 0: not evix


@dataclass
class Run:
    """One timed run and what it produced."""

    timing: measure.Timing
    derivations: int = 0
    errors: int = 0
    started: int = 0  # worker processes started
    same_set: bool = True  # drvPaths equal to the reference's (evix runs)
    lost: int = 0  # reference drvPaths missing from the run


@dataclass
class Results:
    input: Input
    commands: list[Command]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    first_attr: str = ""
    tree_pss_kib: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def median(self, key: str, what: str = "seconds") -> float:
        return statistics.median(getattr(r.timing, what) for r in self.runs[key])


def old_evix(commit: str) -> str:
    """The evix of `commit`: a git worktree under /tmp with its own venv (made once, by its own
    `scripts/dev setup`)."""
    root = Path(tempfile.gettempdir()) / f"evix-{commit}"
    evix = root / ".venv" / "bin" / "evix"
    if not evix.exists():
        if not root.exists():
            log(f"making a worktree of {commit} at {root}")
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(root), commit], check=True)
        log(f"setting up {root} (scripts/dev setup)")
        subprocess.run([str(root / "scripts" / "dev"), "setup"], cwd=root, check=True)
    return str(evix)


def commands(ns: argparse.Namespace, nix: str, evixes: dict[str, str], inp: Input, out: Path,
             first: str) -> list[Command]:
    ref = [nix, "--eval", "--strict", str(out / inp.ref), "--argstr", "result", "count"]
    root = f"(import {out / inp.file})"
    cmds = [Command("ref", ref), Command("ref-rw", ref + ["--read-write-mode"], dict(os.environ, **STABLE_MALLOC)),
            Command("nix-load", [nix, "--eval", "-E", f"builtins.length (builtins.attrNames {root})"]),
            Command("nix-first", [nix, "--eval", "-E", f"{root}{first}.drvPath"])]
    for version, evix in evixes.items():
        for workers in (1, 2):
            base = [evix, "eval", "--no-daemon", "--file", str(out / inp.file), "--workers", str(workers), "-vv"]
            cmds.append(Command(f"{version}-{workers}w", base, workers=workers))
            cmds.append(Command(f"{version}-{workers}w-mem", base + ["--max-memory", str(ns.max_memory)], workers=workers))
    return cmds


def _drv_paths(events: Path) -> tuple[collections.Counter[str], int]:
    paths: collections.Counter[str] = collections.Counter()
    errors = 0
    with open(events, "rb") as f:
        for line in f:
            event = json.loads(line)
            if "drvPath" in event:
                paths[event["drvPath"]] += 1
            elif "error" in event:
                errors += 1
    return paths, errors


def reference_paths(nix: str, inp: Input, out: Path, tmp: Path) -> collections.Counter[str]:
    dest = tmp / "ref-paths.txt"
    measure.run([nix, "--eval", "--strict", str(out / inp.ref), "--argstr", "result", "paths"], dest)
    return collections.Counter(re.findall(r'"(/nix/store/[^"]+\.drv)"', dest.read_text()))


def first_attr(events: Path) -> str:
    """The first derivation an evix run reported, as a Nix attribute selection."""
    with open(events, "rb") as f:
        for line in f:
            event = json.loads(line)
            if "drvPath" in event:
                return "".join(f'."{name}"' for name in event["attrPath"])
    raise SystemExit("bench: evix reported no derivation")


def timed_run(cmd: Command, res: Results, ref: collections.Counter[str], tmp: Path, timeout: float) -> Run:
    events, err = tmp / f"{cmd.key}.out", tmp / f"{cmd.key}.err"
    run = Run(measure.run(cmd.argv, events, cmd.env, stderr=err, timeout=timeout))
    if not cmd.workers:
        if cmd.key.startswith("ref") and int(events.read_text()) != sum(ref.values()):
            res.failures.append(f"{cmd.key} forced {events.read_text().strip()} drvPaths")
        return run
    paths, run.errors = _drv_paths(events)
    run.derivations = sum(paths.values())
    run.same_set = paths == ref
    run.lost = sum((ref - paths).values())
    run.started = len(READY.findall(err.read_bytes()))
    if not run.same_set and not cmd.key.endswith("-mem"):
        res.failures.append(f"{cmd.key}: {run.derivations} derivations, not the reference's {sum(ref.values())}")
    return run


def measure_all(res: Results, ref: collections.Counter[str], tmp: Path, ns: argparse.Namespace) -> None:
    cmds = res.commands
    for c in cmds:
        res.runs[c.key] = []
    for round_ in range(ns.repeat):
        order = cmds[round_ % len(cmds):] + cmds[: round_ % len(cmds)]
        for c in order:
            r = timed_run(c, res, ref, tmp, ns.timeout)
            res.runs[c.key].append(r)
            extra = f", {r.derivations} drvs, {r.started} workers, lost {r.lost}" if c.workers else ""
            log(f"round {round_ + 1}/{ns.repeat} {c.key}: {r.timing.seconds:.2f} s{extra}")
    if ns.tree_memory:
        for c in cmds:
            if c.workers:
                res.tree_pss_kib[c.key] = measure.sample_memory(c.argv).peak_pss_kib


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="timed runs per command (default 3)")
    p.add_argument("--max-memory", type=int, default=DEFAULT_MAX_MEMORY, metavar="MB",
                   help=f"the low limit of the -mem runs (default {DEFAULT_MAX_MEMORY})")
    old = p.add_mutually_exclusive_group()
    old.add_argument("--old-commit", default=OLD_COMMIT, help=f"the evix compared against (default {OLD_COMMIT})")
    old.add_argument("--old-evix", metavar="PATH", help="an evix executable to compare against instead")
    old.add_argument("--no-old", action="store_true", help="measure only this checkout's evix")
    p.add_argument("--new-evix", metavar="PATH", help="the evix measured (default: this venv's or PATH's)")
    p.add_argument("--functions", action="store_true", help="the set with functions below the root")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="kill a run after S s (default 300)")
    p.add_argument("--tree-memory", action="store_true", help="also sample Σ PSS of each evix command once")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the inputs go (default bench/out/)")
    ns = p.parse_args(argv)
    if ns.repeat < 1:
        p.error("--repeat must be at least 1")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    tools = find_tools()
    evixes = {"new": ns.new_evix or tools.evix}
    if not ns.no_old:
        evixes["old"] = ns.old_evix or old_evix(ns.old_commit)
    out = ns.out.resolve()
    inp = next(i for i in generate_realistic(out) if i.name == ("realistic" if ns.functions else "realistic-nofn"))
    env = realistic_report.environment(tools.nix_instantiate, evixes, ns)
    with tempfile.TemporaryDirectory(prefix="evix-realistic-") as tmp_dir:
        tmp = Path(tmp_dir)
        log("reference drvPaths (and warming the store with one run of each evix)")
        ref = reference_paths(tools.nix_instantiate, inp, out, tmp)
        for version, evix in evixes.items():
            measure.run([evix, "eval", "--no-daemon", "--file", str(out / inp.file)], tmp / f"warm-{version}.out",
                        timeout=ns.timeout)
        first = first_attr(tmp / "warm-new.out")
        res = Results(inp, commands(ns, tools.nix_instantiate, evixes, inp, out, first), first_attr=first)
        if sum(ref.values()) != inp.derivations:
            res.failures.append(f"the reference forces {sum(ref.values())} drvPaths, the model expects {inp.derivations}")
        measure_all(res, ref, tmp, ns)
    print(realistic_report.render(res, env, ns, evixes))
    for f in res.failures:
        log(f"CHECK FAILED: {f}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
