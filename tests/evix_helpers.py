"""Helpers for the whole suite: run the real `evix` CLI (`run_evix`, the one way tests run it,
and `start_evix` for a process to watch), wait for a condition (`wait_until`, the one
poller), and ask the same Nix for the truth (`nix-instantiate`) to compare."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from protocol.events import EventKind, event_kind

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
T = TypeVar("T")

# Over 1 GiB for over 3 s if nothing stops it: every element is forced and the list stays
# alive, so a memory watchdog sees it past any test limit however late it samples (a list
# whose elements stay thunks peaks for a fraction of a second and may finish unseen).
MEMORY_HOG = ("builtins.foldl' (acc: e: acc + e.x + builtins.length e.y) 0 "
              "(builtins.genList (i: { x = i; y = [ i ]; }) 6000000)")


def nix_bin(name: str) -> str:
    """A Nix CLI tool of the Nix the tests use (bootstrapped or the user's)."""
    found = shutil.which(name)
    if found:
        return found
    prefix = os.environ.get("EVIX_NIX_PREFIX") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "evix", "nix-2.26.3"
    )
    candidate = os.path.join(prefix, "bin", name)
    if os.path.exists(candidate):
        return candidate
    raise RuntimeError(f"{name} not found: run scripts/dev setup (or put Nix >= 2.26 on PATH)")


def command(name: str) -> list[str]:
    """The console script `name` (`evix`, `evixd`, `evix-eval-jobs`) of this venv, so tests run
    what users run."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = {"evix": "evix_client.main", "evixd": "evixd.daemon.main", "evix-eval-jobs": "evix_client.eval_jobs"}[name]
    return [sys.executable, "-c", f"from {module} import entry; entry()"]


def evix_env(socket_path: str | Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test runs evix in: this one without the user's EVIX_SOCKET and
    EVIX_LOG (a test names its daemon with `socket_path`), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("EVIX_SOCKET", "EVIX_LOG")}
    env.setdefault("PYTHONPATH", str(REPO))
    if socket_path is not None:
        env["EVIX_SOCKET"] = str(socket_path)
    env.update(extra or {})
    return env


@dataclass
class Run:
    """A finished `evix` command: exit code, stdout as printed (bytes), stderr as text."""

    code: int
    stdout: bytes
    stderr: str

    @functools.cached_property
    def events(self) -> list[dict[str, Any]]:
        """stdout parsed as NDJSON (what `evix eval` prints)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def by_attr(self) -> dict[str, dict[str, Any]]:
        return {e["attr"]: e for e in self.events}

    def derivations(self) -> dict[str, dict[str, Any]]:
        return {e["attr"]: e for e in self.events if event_kind(e) is EventKind.DERIVATION}

    def errors(self) -> dict[str, dict[str, Any]]:
        return {e["attr"]: e for e in self.events if event_kind(e) is EventKind.ERROR}

    def canonical(self) -> list[str]:
        """The events as a sorted list of JSON strings: equal for equal event sets."""
        return sorted(json.dumps(e, sort_keys=True) for e in self.events)


def start_evix(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
               socket_path: str | Path | None = None, program: str = "evix", **popen: Any) -> subprocess.Popen[bytes]:
    """Starts `evix ARGS` (or another of our commands: `program`), stdout and stderr piped
    unless `popen` says otherwise."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([*command(program), *args], cwd=cwd, env=evix_env(socket_path, env), **popen)


def run_evix(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
             socket_path: str | Path | None = None, program: str = "evix", stdin: bytes | None = None,
             timeout: float = 120) -> Run:
    """Runs `evix ARGS` (or `program`) to the end, as a user would (through the daemon at
    `socket_path`, if any), with `stdin` as its input when given."""
    piped = {"stdin": subprocess.PIPE} if stdin is not None else {}
    with start_evix(*args, cwd=cwd, env=env, socket_path=socket_path, program=program, **piped) as proc:
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return Run(proc.returncode, out, err.decode("utf-8", "replace"))


def eval_locally(*args: str, **kwargs: Any) -> Run:
    """`evix eval --no-daemon ARGS`: the engine in the CLI's own process."""
    return run_evix("eval", "--no-daemon", *args, **kwargs)


def wait_until(predicate: Callable[[], T], what: str, timeout: float = 20, interval: float = 0.05) -> T:
    """Polls `predicate` until it returns something true, and returns that; fails the test
    naming `what` after `timeout` seconds. The one way the suite waits for a condition."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)
    return result


def nix_string(s: str) -> str:
    """`s` as a Nix string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def nix_drv_paths(source: str, attr_paths: list[list[str]], *, cwd: str | Path | None = None) -> dict[str, str]:
    """drvPaths of `attr_paths` in `source` (a Nix expression) as nix-instantiate computes
    them, in one call: {".".join(path): drvPath}."""
    selections = " ".join(
        f"{nix_string('.'.join(p))} = (root{''.join('.' + nix_string(e) for e in p)}).drvPath;" for p in attr_paths
    )
    wrapper = f"root: {{ {selections} }}"
    expr = f"({wrapper}) ({source})"
    cmd = [nix_bin("nix-instantiate"), "--eval", "--strict", "--json", "--expr", expr]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if out.returncode != 0:
        raise AssertionError(f"nix-instantiate failed: {out.stderr}")
    return json.loads(out.stdout)


ALLOW_SKIP_ENV = "EVIX_TESTS_ALLOW_SKIP"


def cannot_run_here(why: str) -> NoReturn:
    """A test this machine cannot run fails, saying why, so that CI never passes it by
    skipping it; a developer without (say) root opts into skipping with EVIX_TESTS_ALLOW_SKIP=1."""
    if os.environ.get(ALLOW_SKIP_ENV) == "1":
        pytest.skip(why)
    pytest.fail(f"cannot run here: {why} (set {ALLOW_SKIP_ENV}=1 to skip it instead)", pytrace=False)
