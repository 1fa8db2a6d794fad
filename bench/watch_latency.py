"""The benchmark of issue 10: how long `evix watch` takes from a write to the diff line on
stdout, against a warm `evix eval` of the same input.

    python bench/watch_latency.py [--repeat N] [--workers N] [--inputs pkgset,one]

Inputs (written to a temporary directory): `pkgset`, the 10k package set of generate.py
with one extra attribute `watchEdit`, and `one`, a file of that one attribute alone. Each
edit rewrites that attribute's name (one derivation changes, everything is re-evaluated).

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


def write_inputs(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file to edit, the text with `@EDIT@` where the edited attribute goes)."""
    (d / "pkgset").mkdir()
    (d / "pkgset" / "set.nix").write_text(gen_pkgset.pkgset_nix())
    (d / "one").mkdir()
    return {"pkgset": (d / "pkgset" / "default.nix", "import ./set.nix // { @EDIT@ }\n"),
            "one": (d / "one" / "default.nix", "{ @EDIT@ }\n")}


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


def watch_latencies(args: list[str], env: dict[str, str], path: Path, template: str, repeat: int,
                    pause: float, start: int) -> list[float]:
    """Seconds from each write to its diff line; the first evaluation is waited for first."""
    write(path, template, start)
    watch = Watch(args, env)
    try:
        watch.until_events("watchEdit")
        out = []
        for i in range(1, repeat + 1):
            time.sleep(pause)
            t0 = time.perf_counter()
            write(path, template, start + i)
            diff = watch.until_diff()
            out.append(time.perf_counter() - t0)
            assert [c["name"] for c in diff["changed"]] == [f"edit-{start + i}"], diff
        return out
    finally:
        watch.stop()


def eval_times(args: list[str], env: dict[str, str], repeat: int, pause: float) -> list[float]:
    out = []
    measure_run([EVIX, "eval", *args], env=env)  # warms the store and (through evixd) the session
    for _ in range(repeat):
        time.sleep(pause)
        out.append(measure_run([EVIX, "eval", *args], env=env).seconds)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pause", type=float, default=1.0, help="seconds between two edits (default 1)")
    p.add_argument("--inputs", default="pkgset,one")
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="evix-watch-bench-") as tmp:
        d = Path(tmp)
        inputs = write_inputs(d)
        sock = d / "evix.sock"
        env = dict(os.environ, EVIX_SOCKET=str(sock))
        daemon = subprocess.Popen([EVIXD, "--foreground", "--socket", str(sock), "--warm-seconds", "600"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            while not sock.exists():
                time.sleep(0.05)
            rows = [measure(name, *inputs[name], env, ns) for name in ns.inputs.split(",")]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    report(rows, ns)
    return 0


def measure(name: str, path: Path, template: str, env: dict[str, str], ns: argparse.Namespace) -> dict:
    base = ["--file", str(path), "--workers", str(ns.workers)]
    med = statistics.median
    write(path, template, 0)
    row = {"input": name,
           "eval local": med(eval_times([*base, "--no-daemon"], env, ns.repeat, ns.pause)),
           "eval warm": med(eval_times(base, env, ns.repeat, ns.pause))}
    row["watch"] = med(watch_latencies([*base, "--no-daemon"], env, path, template, ns.repeat, ns.pause, 1000))
    row["watch daemon"] = med(watch_latencies(base, env, path, template, ns.repeat, ns.pause, 2000))
    return row


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
