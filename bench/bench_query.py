"""The benchmark of issue 4: warm `evix query` against evaluating the same input.

    python bench/bench_query.py [--sizes 20000,100000] [--repeat N] [--workers N]

For each size it writes a file of N trivial derivations in 100 recursed scopes
(g0..g99, each with 10 sub-scopes), starts `evixd` on a private socket, and measures:

  eval local    evix eval --no-daemon --workers W        (for comparison)
  eval daemon   evix eval --workers W through the daemon  (makes the warm session)
  query full    evix query --file X                      (every derivation, NDJSON)
  query prefix  evix query --file X --attr-prefix g7     (1 % of them)

The store is warmed first (an untimed run writes the .drv files), so evaluations are
compared as re-evaluations. Query times are end to end (process start to exit, output to /dev/null); "server" is
the daemon's own time for the same request (its `serverMs`). Process start is measured
as `evix query --help` and as a query of a 10-derivation session. Medians of --repeat
runs. Targets (issue 4): full 100k query <= 0.25 s, prefix <= 20 ms server time,
`evix query` start <= 60 ms. Nothing is asserted; the table is the result.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SERVER_MS = re.compile(rb"\(daemon: ([0-9.]+) ms\)")
TARGETS = {"query full 100000": 0.25, "server prefix": 0.020, "start": 0.060}


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def write_input(path: Path, n: int) -> Path:
    """`n` derivations as g<i>.s<j>.p<k>: 100 scopes of 10 sub-scopes, all recursed."""
    per_sub = max(1, n // 1000)
    path.write_text(f"""\
let
  mk = name: derivation {{ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; }};
  scope = f: n: builtins.listToAttrs (builtins.genList f n) // {{ recurseForDerivations = true; }};
  sub = g: s: scope (k: {{ name = "p${{toString k}}"; value = mk "g${{toString g}}-s${{toString s}}-p${{toString k}}"; }}) {per_sub};
  group = g: scope (s: {{ name = "s${{toString s}}"; value = sub g s; }}) 10;
in scope (g: {{ name = "g${{toString g}}"; value = group g; }}) 100
""")
    return path


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, bytes]:
    """Wall time of one run (stdout discarded) and its stderr."""
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr.decode(errors='replace')}")
    return elapsed, done.stderr


def median_run(cmd: list[str], env: dict[str, str], cwd: Path, repeat: int) -> tuple[float, float | None]:
    """Median wall seconds, and median server ms when the command reports it (-v)."""
    walls, servers = [], []
    for _ in range(repeat):
        wall, err = timed(cmd, env, cwd)
        walls.append(wall)
        m = SERVER_MS.search(err)
        if m:
            servers.append(float(m.group(1)) / 1000)
    return statistics.median(walls), statistics.median(servers) if servers else None


def start_daemon(sock: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen([tool("evixd"), "--foreground", "--socket", str(sock), "--max-warm-workers", "2"],
                                stdout=out, stderr=out, env=env)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"evixd did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def daemon_rss(sock: Path) -> tuple[int, int]:
    """(daemon RSS, estimated session memory) in bytes, from `status`."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from evix_client.daemon_client import DaemonClient

    with DaemonClient.connect(str(sock)) as c:
        s = c.call("status")
    return s["memory"]["daemonRss"], s["sessionMemoryBytes"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="evxb-", dir="/tmp"))
    sock = work / "evix.sock"
    env = dict(os.environ, EVIX_SOCKET=str(sock))
    env.pop("EVIX_LOG", None)
    evix = tool("evix")
    daemon = start_daemon(sock, env, work / "evixd.log")
    rows: list[tuple[str, float, float | None, str]] = []
    try:
        tiny = write_input(work / "tiny.nix", 10)
        timed([evix, "eval", "--file", tiny.name], env, work)
        help_s, _ = median_run([evix, "query", "--help"], env, work, args.repeat)
        tiny_s, tiny_server = median_run([evix, "query", "--file", tiny.name, "-v"], env, work, args.repeat)
        rows.append(("start: evix query --help", help_s, None, ""))
        rows.append(("start: evix query (10 drvs)", tiny_s, tiny_server, ""))
        for n in sizes:
            nix = write_input(work / f"drvs-{n}.nix", n)
            base = ["--file", nix.name]
            timed([evix, "eval", "--no-daemon", *base], env, work)  # writes the .drv files: not timed
            local_s, _ = median_run([evix, "eval", "--no-daemon", "--workers", str(args.workers), *base], env, work,
                                    max(1, args.repeat // 3))
            daemon_s, _ = timed([evix, "eval", "--workers", str(args.workers), *base], env, work)
            full_s, full_server = median_run([evix, "query", *base, "-v"], env, work, args.repeat)
            prefix_s, prefix_server = median_run([evix, "query", *base, "--attr-prefix", "g7", "-v"], env, work,
                                                 args.repeat)
            rss, estimate = daemon_rss(sock)
            rows.append((f"eval local {n} ({args.workers}w)", local_s, None, ""))
            rows.append((f"eval daemon {n} ({args.workers}w)", daemon_s, None, ""))
            rows.append((f"query full {n}", full_s, full_server, f"{full_s / local_s:.1%} of eval"))
            rows.append((f"query prefix {n} (1%)", prefix_s, prefix_server, f"{prefix_s / local_s:.1%} of eval"))
            rows.append((f"  daemon RSS after {n}", rss / 2**20, None, f"estimate of all sessions {estimate / 2**20:.0f} MiB"))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'measure':34} {'end to end':>12} {'server':>10}  note")
    for name, value, server, note in rows:
        unit = "MiB" if "RSS" in name else "s"
        shown = f"{value:9.0f} {unit}" if unit == "MiB" else f"{value * 1000:9.1f} ms"
        srv = f"{server * 1000:7.2f} ms" if server is not None else ""
        print(f"{name:34} {shown:>12} {srv:>10}  {note}")
    print("targets: full 100k query <= 250 ms end to end; prefix <= 20 ms server; evix query start <= 60 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
