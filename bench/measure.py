"""Running one command and measuring it with public means only.

Wall time is `time.perf_counter` around the process's whole life. `os.wait4` gives the
process's rusage, which on Linux also covers the children it reaped (evix's workers):
CPU time is their sum, but `ru_maxrss` is the peak of the largest single process. The sum
over a process tree is not in any rusage, so `sample_memory` polls /proc in a separate run
(polling perturbs the timing, which is why it is never done in a timed run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


class CommandFailed(Exception):
    """The measured command exited non-zero (the message has its stderr tail)."""


@dataclass(frozen=True)
class Timing:
    seconds: float  # wall time
    cpu_seconds: float  # user + system, the process and its reaped children
    max_rss_kib: int  # the largest single process's peak RSS (not a sum)


@dataclass(frozen=True)
class Memory:
    peak_rss_kib: int  # peak of the sum of RSS over the process tree (shared pages counted per process)
    peak_pss_kib: int  # peak of the sum of PSS (shared pages split between sharers)
    processes: int  # most processes seen at once
    samples: int


def run(cmd: list[str], stdout: Path | None = None, env: dict[str, str] | None = None,
        stderr: Path | None = None, timeout: float | None = None) -> Timing:
    """Runs `cmd` to completion, stdout to `stdout` (default /dev/null), stderr to `stderr`
    (default kept only for the error message); raises CommandFailed. After `timeout` seconds
    the command's whole process group is killed (which is a failure)."""
    with (open(stdout, "wb") if stdout else open(os.devnull, "wb")) as out, \
            (open(stderr, "w+b") if stderr else tempfile.TemporaryFile()) as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=timeout is not None)
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL)) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace")
            late = f" (killed after the {timeout:g} s timeout)" if timeout and seconds >= timeout else ""
            raise CommandFailed(f"{' '.join(cmd)} exited with {proc.returncode}{late}:\n{tail}")
    return Timing(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from every thread's /proc children list (forks may come from any thread)."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def _rss_pss_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:  # gone between listing and reading
        pass
    return rss, pss


def sample_memory(cmd: list[str], period: float = 0.01, env: dict[str, str] | None = None) -> Memory:
    """Runs `cmd` once (stdout discarded) and polls the RSS and PSS summed over its process tree."""
    peak_rss = peak_pss = most = samples = 0
    with open(os.devnull, "wb") as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        while proc.poll() is None:
            pids = _tree(proc.pid)
            sizes = [_rss_pss_kib(p) for p in pids]
            peak_rss = max(peak_rss, sum(r for r, _ in sizes))
            peak_pss = max(peak_pss, sum(p for _, p in sizes))
            most = max(most, len(pids))
            samples += 1
            time.sleep(period)
        if proc.returncode != 0:
            err.seek(0)
            raise CommandFailed(f"{' '.join(cmd)} exited with {proc.returncode}:\n{err.read()[-2000:].decode()}")
    return Memory(peak_rss, peak_pss, most, samples)
