"""The benchmark of issue 10: how long `evix watch` takes from a write to the diff line on
stdout, against a warm `evix eval` of the same input.

    python bench/watch_latency.py [--repeat N] [--workers N] [--inputs pkgset,one]

Inputs (written to a temporary directory, one copy per command): `pkgset`, the 10k package
set of generate.py with one extra attribute `watchEdit`, and `one`, a file of that one
attribute alone. Each edit rewrites that attribute's name (one derivation changes, and
everything is re-evaluated). The commands take turns, round-robin.

Measured, medians of --repeat:
  watch         `evix watch --no-daemon`: write the file -> its diff line read from stdout
  watch daemon  `evix watch` through evixd: the same
  eval warm     `evix eval` through evixd with a warm session (a process started, Nix
                initialised, waiting): start to exit, stdout to /dev/null
  eval local    `evix eval --no-daemon`: start to exit (for orientation)
The ratio is watch / eval warm, the overhead watch - eval warm. Targets (issue 10): ratio
<= 1.2 and overhead <= 150 ms. Between edits the watch is left alone for --pause seconds,
as a person between two saves. Nothing is asserted; the table is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gen_pkgset  # noqa: E402
from measure import run as measure_run  # noqa: E402

EVIX = str(Path(sys.executable).parent / "evix")
EVIXD = str(Path(sys.executable).parent / "evixd")
TARGET_RATIO, TARGET_OVERHEAD = 1.2, 0.150


def edited(n: int) -> str:
    return (f'watchEdit = derivation {{ name = "edit-{n}"; system = "x86_64-linux"; builder = "/bin/sh"; }};')


def write_inputs(d: Path, name: str) -> tuple[Path, str]:
    """Writes input `name` into `d`: (the file to edit, its text with `@EDIT@` where the
    edited attribute goes)."""
    d.mkdir(parents=True)
    if name == "pkgset":
        (d / "set.nix").write_text(gen_pkgset.pkgset_nix())
        return d / "default.nix", "import ./set.nix // { @EDIT@ }\n"
    return d / "default.nix", "{ @EDIT@ }\n"


def write(path: Path, template: str, n: int) -> None:
    path.write_text(template.replace("@EDIT@", edited(n)))


class Watch:
    """A running `evix watch` whose stdout is read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([EVIX, "watch", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env)

    def until_diff(self) -> dict:
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            obj = json.loads(line)
            if set(obj) == {"added", "removed", "changed", "errors"}:
                return obj
        raise RuntimeError(f"evix watch ended ({self.proc.wait()})")

    def until_events(self, attr: str) -> None:
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            if json.loads(line).get("attr") == attr:
                return
        raise RuntimeError(f"evix watch ended ({self.proc.wait()})")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def latency(watch: Watch, path: Path, template: str, n: int) -> float:
    """Seconds from writing edit `n` to its diff line."""
    t0 = time.perf_counter()
    write(path, template, n)
    diff = watch.until_diff()
    seconds = time.perf_counter() - t0
    assert [c["name"] for c in diff["changed"]] == [f"edit-{n}"], diff
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pause", type=float, default=1.0, help="seconds between two edits (default 1)")
    p.add_argument("--inputs", default="pkgset,one")
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="evix-watch-bench-") as tmp:
        d = Path(tmp)
        sock = d / "evix.sock"
        env = dict(os.environ, EVIX_SOCKET=str(sock))
        daemon = subprocess.Popen([EVIXD, "--foreground", "--socket", str(sock), "--warm-seconds", "600"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            while not sock.exists():
                time.sleep(0.05)
            rows = [measure(d / name, name, env, ns) for name in ns.inputs.split(",")]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    report(rows, ns)
    return 0


def measure(d: Path, name: str, env: dict[str, str], ns: argparse.Namespace) -> dict:
    """Round-robin over the four commands (so that a change of machine load hits all alike),
    each on its own copy of the input: a watch reacts only to the edits meant for it."""
    files = {kind: write_inputs(d / kind, name) for kind in ("eval", "watch", "watch daemon")}
    for path, template in files.values():
        write(path, template, 0)
    workers = ["--workers", str(ns.workers)]
    eval_args = ["eval", "--file", str(files["eval"][0]), *workers]
    watches = {"watch": Watch(["--no-daemon", "--file", str(files["watch"][0]), *workers], env),
               "watch daemon": Watch(["--file", str(files["watch daemon"][0]), *workers], env)}
    times: dict[str, list[float]] = {k: [] for k in ("eval local", "eval warm", "watch", "watch daemon")}
    try:
        for watch in watches.values():
            watch.until_events("watchEdit")
        measure_run([EVIX, *eval_args, "--no-daemon"], env=env)  # the store is warm from here
        measure_run([EVIX, *eval_args], env=env)  # and the daemon's session
        for n in range(1, ns.repeat + 1):
            for kind in times:
                time.sleep(ns.pause)
                if kind.startswith("eval"):
                    local = ["--no-daemon"] if kind == "eval local" else []
                    times[kind].append(measure_run([EVIX, *eval_args, *local], env=env).seconds)
                else:
                    times[kind].append(latency(watches[kind], *files[kind], n))
    finally:
        for watch in watches.values():
            watch.stop()
    return {"input": name, **{k: statistics.median(v) for k, v in times.items()}}


def report(rows: list[dict], ns: argparse.Namespace) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs; load average at the end {load}; {ns.workers} workers; median of {ns.repeat}\n")
    print("| input | eval local s | eval warm s | watch s | ratio | overhead ms | watch daemon s | ratio | overhead ms "
          "| met? |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        warm = r["eval warm"]
        cells = []
        met = True
        for key in ("watch", "watch daemon"):
            ratio, overhead = r[key] / warm, r[key] - warm
            met = met and (ratio <= TARGET_RATIO or overhead <= 0) and overhead <= TARGET_OVERHEAD
            cells += [f"{r[key]:.3f}", f"{ratio:.2f}×", f"{overhead * 1000:.0f}"]
        print(f"| {r['input']} | {r['eval local']:.3f} | {warm:.3f} | " + " | ".join(cells)
              + f" | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
