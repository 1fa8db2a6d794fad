"""Finding the evaluator processes a test started, even once their parent is gone.

A test puts a fresh tag in the environment of the `evix` (or `evixd`) it starts; workers
inherit it, so they can be found after being re-parented (what an orphaned worker is).
Also the slow job set those tests stop in the middle of.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psutil

from evix_helpers import wait_until
from protocol.environment import WORKER_ENV

TAG_ENV = "EVIX_TEST_RUN"

# ~2,000 attributes of ~0.05-0.1 s of CPU each: minutes in all, so a run is always caught
# in the middle, with every worker busy.
SLOW_JOBS = """\
let mk = i: derivation {
  name = "slow-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh";
  work = toString (builtins.foldl' (a: b: a + b) 0 (builtins.genList (j: j * i) 300000));
}; in
builtins.listToAttrs (builtins.genList (i: { name = "p${toString i}"; value = mk i; }) 2000)
"""


def write_slow_jobs(directory: Path) -> Path:
    path = directory / "slow.nix"
    path.write_text(SLOW_JOBS)
    return path


def new_tag() -> str:
    return uuid.uuid4().hex


def tagged(tag: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) with the tag set."""
    return dict(os.environ if env is None else env, **{TAG_ENV: tag})


def evaluators(tag: str) -> list[psutil.Process]:
    """Live worker processes (not zombies) carrying `tag`."""
    found = []
    for p in psutil.process_iter():
        try:
            environ = p.environ()
            if environ.get(TAG_ENV) == tag and environ.get(WORKER_ENV) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def wait_for_evaluators(tag: str, n: int = 1, timeout: float = 60) -> list[psutil.Process]:
    def enough() -> list[psutil.Process] | None:
        found = evaluators(tag)
        return found if len(found) >= n else None

    return wait_until(enough, f"{n} evaluator(s) to start", timeout=timeout)


def assert_none_left(tag: str, within: float = 1.0) -> None:
    """No evaluator with `tag` is alive `within` seconds from now (polled, never slept out)."""
    try:
        wait_until(lambda: not evaluators(tag), f"no evaluator left within {within} s", timeout=within)
    except AssertionError:
        left = evaluators(tag)
        for p in left:
            p.kill()
        raise AssertionError(f"evaluators still alive {within} s later: {[p.pid for p in left]}") from None
