"""The benchmark of issue 3: evix against one Nix process forcing the same drvPaths.

    python bench/run.py [--quick] [--repeat N] [--out DIR] [--no-memory]   (or: scripts/dev bench)

For every input (see generate.py) it first checks that the reference and evix agree
(same set of drvPaths, as many as the manifest expects, the expected error events), which
also warms the store; then it times, round-robin so that load drifts hit all alike,
`--repeat` runs of each command and reports medians and ratios from this one run:

  reference     nix-instantiate --eval --strict X.ref.nix   (read-only: computes drvPaths
                                                              but writes no .drv file)
  reference rw  the same with --read-write-mode             (writes/validates .drv files
                                                              like evix; for orientation)
                and MALLOC_TRIM_THRESHOLD_ set: without it glibc trims and regrows the
                heap around every .drv Nix writes, which makes this run 0.6 s to 2.8 s
                on the same 32,768-leaf tree, depending on heap layout
  evix 1w, 2w   evix eval --no-daemon --file X.nix --workers 1 / 2

Needs `nix-instantiate` and `evix` on PATH (scripts/dev bench arranges both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from protocol.events import EventKind, event_kind

import measure
import report
from generate import DEFAULT_OUT, Input, generate

QUICK = ("empty", "tree-1296", "pkgset-10000")
TARGETS = {"tree-32768": 3.0, "pkgset-10000": 2.5}  # evix 2w / reference, from issue 3
CONFIGS = ("ref", "ref-rw", "evix-1w", "evix-2w")
STABLE_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30)}  # see "reference rw" above


@dataclass
class Tools:
    """The two programs compared, found on PATH once."""

    nix_instantiate: str
    evix: str

    def command(self, config: str, inp: Input, out: Path, result: str = "count") -> list[str]:
        """The command line of one configuration (see CONFIGS) for `inp`."""
        if config.startswith("ref"):
            cmd = [self.nix_instantiate, "--eval", "--strict", str(out / inp.ref), "--argstr", "result", result]
            return cmd + (["--read-write-mode"] if config == "ref-rw" else [])
        workers = config.removeprefix("evix-").removesuffix("w")
        # --no-daemon: the one-shot path (like nix-eval-jobs), whatever daemon runs on the machine
        return [self.evix, "eval", "--no-daemon", "--file", str(out / inp.file), "--workers", workers]

    @staticmethod
    def env(config: str) -> dict[str, str] | None:
        """The environment of one configuration (None: this process's own)."""
        return dict(os.environ, **STABLE_MALLOC) if config == "ref-rw" else None


@dataclass
class Measured:
    """Everything measured for one input."""

    input: Input
    timings: dict[str, list[measure.Timing]] = field(default_factory=dict)
    memory: dict[str, measure.Memory] = field(default_factory=dict)
    check: str = ""
    ok: bool = True

    def median(self, config: str) -> float:
        return statistics.median(t.seconds for t in self.timings[config])


def find_tools() -> Tools:
    nix = shutil.which("nix-instantiate")
    evix = shutil.which("evix") or str(Path(sys.executable).with_name("evix"))
    if nix is None or not os.access(evix, os.X_OK):
        sys.exit("bench: needs nix-instantiate and evix on PATH; run it as `scripts/dev bench`")
    return Tools(nix, evix)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- checking (doubles as the warm-up run) ----------------------------------------------
def _evix_events(path: Path) -> tuple[set[str], int, int]:
    """drvPaths, derivation events and error events in an evix output file."""
    paths: set[str] = set()
    derivations = errors = 0
    with open(path, "rb") as f:
        for line in f:
            event = json.loads(line)
            kind = event_kind(event)
            if kind is EventKind.DERIVATION:
                derivations += 1
                paths.add(event["drvPath"])
            elif kind is EventKind.ERROR:
                errors += 1
    return paths, derivations, errors


def _ref_paths(path: Path) -> list[str]:
    """The drvPaths in the reference's printed list."""
    return re.findall(r'"(/nix/store/[^"]+\.drv)"', path.read_text())


def check(m: Measured, tools: Tools, out: Path, tmp: Path) -> None:
    """Runs every command once; the reference's drvPaths must be exactly evix's derivations."""
    inp = m.input
    ref_file = tmp / "ref-paths.txt"
    measure.run(tools.command("ref", inp, out, "paths"), ref_file)
    ref = _ref_paths(ref_file)
    for config in ("ref", "ref-rw"):  # warm the timed form of the reference too
        measure.run(tools.command(config, inp, out), env=tools.env(config))
    notes, ok = [], len(ref) == inp.derivations
    for config in ("evix-1w", "evix-2w"):
        ev_file = tmp / f"{config}.jsonl"
        measure.run(tools.command(config, inp, out), ev_file)
        paths, derivations, errors = _evix_events(ev_file)
        same = derivations == len(ref) and paths == set(ref) and errors == inp.errors
        ok = ok and same
        notes.append(f"{config[5:]}: {derivations} derivations, {errors} errors{'' if same else ' MISMATCH'}")
    m.ok = ok
    m.check = (f"reference forces {len(ref)} drvPaths (expected {inp.derivations}); evix "
               + "; ".join(notes) + (" -> OK" if ok else " -> MISMATCH"))


# ---- timing --------------------------------------------------------------------------------
def _count_derivations(path: Path) -> int:
    return path.read_bytes().count(b'"drvPath":')


def time_input(m: Measured, tools: Tools, out: Path, tmp: Path, repeat: int) -> None:
    inp = m.input
    for config in CONFIGS:
        m.timings[config] = []
    for _ in range(repeat):
        for config in CONFIGS:
            dest = tmp / f"{config}.out"
            m.timings[config].append(measure.run(tools.command(config, inp, out), dest, tools.env(config)))
            got = int(dest.read_text()) if config.startswith("ref") else _count_derivations(dest)
            if got != inp.derivations:
                m.ok = False
                m.check += f"; timed {config} run produced {got} derivations"


def memory_input(m: Measured, tools: Tools, out: Path) -> None:
    """One extra, untimed run of each evix command sampling the whole process tree."""
    for config in ("evix-1w", "evix-2w"):
        m.memory[config] = measure.sample_memory(tools.command(config, m.input, out))


# ---- main ----------------------------------------------------------------------------------
def _revision() -> str:
    """The evix commit measured, and whether the tree had uncommitted changes (read-only git calls)."""
    root = Path(__file__).resolve().parent.parent
    git = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def environment(tools: Tools, repeat: int) -> str:
    nix = subprocess.run([tools.nix_instantiate, "--version"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{nix}; evix {_revision()} at {tools.evix}; Python {platform.python_version()}; "
            f"{os.cpu_count()} CPUs; load average at start {load}; median of {repeat} runs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    p.add_argument("--repeat", type=int, default=5, metavar="N", help="timed runs per command (default 5)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the inputs are (default bench/out/)")
    p.add_argument("--no-memory", action="store_true", help="skip the sampled process-tree memory runs")
    ns = p.parse_args(argv)
    if ns.repeat < 1:
        p.error("--repeat must be at least 1")
    tools = find_tools()
    out = ns.out.resolve()
    inputs = [i for i in generate(out) if not ns.quick or i.name in QUICK]
    env = environment(tools, ns.repeat)
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="evix-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for inp in inputs:
            m = Measured(inp)
            log(f"{inp.name}: checking and warming up")
            check(m, tools, out, tmp)
            log(f"{inp.name}: {m.check}")
            log(f"{inp.name}: timing, {ns.repeat} runs of each command")
            time_input(m, tools, out, tmp, ns.repeat)
            if not ns.no_memory:
                log(f"{inp.name}: sampling memory")
                memory_input(m, tools, out)
            results.append(m)
    print(report.render(results, env, TARGETS))
    return 0 if all(m.ok for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
