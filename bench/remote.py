"""Remote workers on loopback against local workers (issue 11): `evix eval --workers 0
--remote HOST:PORT "" 2` (two connections to one `evix worker --listen` on this machine)
against `evix eval --workers 2`, on the same input, interleaved, medians of --repeat runs.

    python bench/remote.py [--repeat N] [--input NAME]

Checks first that both give the same drvPaths. Prints one table and the ratio remote/local
(the target is <= 1.3). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate  # noqa: E402
import measure  # noqa: E402

TOKEN = "bench-token"


def _evix() -> str:
    found = shutil.which("evix")
    if not found:
        raise SystemExit("evix is not on PATH: run through `scripts/dev shell` or `scripts/dev bench`")
    return found


def start_service(evix: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    log = Path(tempfile.mkstemp(prefix="evix-worker-", suffix=".log")[1])
    proc = subprocess.Popen([evix, "worker", "--listen", "127.0.0.1:0", "--token", TOKEN], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on (\S+)", log.read_text())
        if found:
            return proc, found.group(1), log
        if proc.poll() is not None:
            raise SystemExit(f"evix worker exited: {log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("evix worker did not start listening")


def drv_paths(out: Path) -> list[str]:
    return sorted(json.loads(line)["drvPath"] for line in out.read_text().splitlines() if '"drvPath"' in line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--input", default="pkgset-10000", help="an input of generate.py (default pkgset-10000)")
    ns = p.parse_args(argv)
    inputs = {i.name: i for i in generate.generate()}
    source = generate.DEFAULT_OUT / inputs[ns.input].file
    evix = _evix()
    service, endpoint, log = start_service(evix)
    env = dict(os.environ, EVIX_REMOTE_TOKEN=TOKEN)
    commands = {
        "local 2 workers": [evix, "eval", "--no-daemon", "--file", str(source), "--workers", "2"],
        "remote 2 connections": [evix, "eval", "--no-daemon", "--file", str(source), "--workers", "0",
                                 "--remote", endpoint, "", "2"],
    }
    try:
        outs = {}
        for name, cmd in commands.items():  # the check, which also warms the store
            outs[name] = Path(tempfile.mkstemp(suffix=".ndjson")[1])
            measure.run(cmd, stdout=outs[name], env=env, timeout=600)
        first, second = (drv_paths(o) for o in outs.values())
        if first != second or len(first) != inputs[ns.input].derivations:
            print(f"check failed: {len(first)} vs {len(second)} drvPaths (expected {inputs[ns.input].derivations})")
            return 1
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(ns.repeat):
            for name, cmd in commands.items():
                times[name].append(measure.run(cmd, env=env, timeout=600).seconds)
    finally:
        service.kill()
        service.wait()
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"input {ns.input} ({len(first)} derivations), median of {ns.repeat} interleaved runs")
    print("| command | seconds |\n|---|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"ratio remote/local: {medians['remote 2 connections'] / medians['local 2 workers']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
