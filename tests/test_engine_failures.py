"""One broken attribute is one error event: Nix errors, dead workers, timeouts, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from evix_helpers import FIXTURES, MEMORY_HOG, eval_locally, start_evix, wait_until
from protocol.environment import EVALUATOR_NAME

BROKEN = FIXTURES / "broken.nix"
GOOD = {"good1", "good3", "nested.good2", "badMeta"}

# ~4 s of CPU in Nix with modest memory: long enough to be caught in flight.
SLOW = (
    "let list = builtins.genList (x: x * 7919 - (x / 3) * 5) 200000; in "
    "builtins.foldl' (acc: i: acc + builtins.length (builtins.sort (a: b: a > b) list)) 0 (builtins.genList (x: x) 40)"
)


def _fixture(tmp_path: Path, middle: str) -> Path:
    """a, the given attribute `middle` (an expression for a name suffix), z."""
    f = tmp_path / "fixture.nix"
    f.write_text(
        "let mk = name: derivation { inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }; in {\n"
        '  a = mk "a";\n'
        f'  middle = mk "middle-${{toString ({middle})}}";\n'
        '  z = mk "z";\n'
        "}\n"
    )
    return f


@pytest.fixture(scope="module")
def broken_run():
    run = eval_locally("--file", str(BROKEN), "--workers", "2")
    assert run.code == 0, run.stderr
    return run


@pytest.mark.parametrize(
    "attr, words",
    [
        ("thrown", "this package is broken on purpose"),
        ("aborted", "aborting on purpose"),
        ("asserted", "the assertion '(1 == 2)'"),
        ("loop", "infinite recursion encountered"),
        ("deepRecursion", "max-call-depth exceeded"),
        ("missing", "attribute 'doesNotExist' missing"),
        ("typeError", "cannot add a string to an integer"),
        ("nested.bad", "nested failure"),
    ],
)
def test_nix_errors_land_on_their_attribute(broken_run, attr, words):
    event = broken_run.errors()[attr]
    assert words in event["error"]
    assert event["fatal"] is False
    assert event["attrPath"] == attr.split(".")


def test_good_derivations_survive_broken_neighbours(broken_run):
    assert set(broken_run.derivations()) == GOOD
    assert len(broken_run.errors()) == 8


def _worker_pids(parent: psutil.Process) -> list[int]:
    """The processes that evaluate (forked or spawned workers; not a template)."""
    found = []
    for c in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if c.name() == EVALUATOR_NAME:
                found.append(c.pid)
    return found


def _start(*args: str) -> subprocess.Popen:
    return start_evix("eval", "--no-daemon", *args, text=True)


def _wait_for_workers(proc: subprocess.Popen, n: int = 1, settle: float = 1.5) -> list[int]:
    parent = psutil.Process(proc.pid)
    wait_until(lambda: len(_worker_pids(parent)) >= n, f"{n} worker(s) to start")
    time.sleep(settle)  # let the quick attributes finish: the slow one is in flight
    return _worker_pids(parent)


@pytest.mark.parametrize("sig, words", [(signal.SIGSEGV, "SIGSEGV"), (signal.SIGKILL, "SIGKILL"), (signal.SIGABRT, "SIGABRT")])
def test_a_crashed_worker_costs_only_its_attribute(tmp_path, sig, words):
    f = _fixture(tmp_path, SLOW)
    proc = _start("--file", str(f))
    try:
        (pid, *_) = _wait_for_workers(proc)
        os.kill(pid, sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    import json

    events = {e["attr"]: e for e in map(json.loads, out.splitlines())}
    assert proc.returncode == 0, err
    assert words in events["middle"]["error"] and "worker killed" in events["middle"]["error"]
    assert {"a", "z"} <= {a for a, e in events.items() if "drvPath" in e}


def test_a_worker_over_max_memory_is_killed_and_replaced(tmp_path):
    f = _fixture(tmp_path, MEMORY_HOG)
    run = eval_locally("--file", str(f), "--max-memory", "300", "--workers", "2")
    assert run.code == 0, run.stderr
    assert "memory limit" in run.errors()["middle"]["error"]
    assert {"a", "z"} <= set(run.derivations())


def test_per_item_timeout(tmp_path):
    f = _fixture(tmp_path, SLOW)
    run = eval_locally("--file", str(f), "--timeout", "1")
    assert run.code == 0, run.stderr
    assert "timed out after 1 s" in run.errors()["middle"]["error"]
    assert {"a", "z"} <= set(run.derivations())


def test_ctrl_c_stops_cleanly_and_leaves_no_worker(tmp_path):
    f = _fixture(tmp_path, SLOW)
    proc = _start("--file", str(f), "--workers", "2")
    try:
        pids = _wait_for_workers(proc, 2, settle=0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    wait_until(lambda: not any(_alive(p) for p in pids), "the workers to exit", timeout=5)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_input_that_cannot_load_is_fatal():
    run = eval_locally("--expr", 'throw "no input here"')
    assert run.code == 1
    assert "no input here" in run.stderr and "Traceback" not in run.stderr
    run = eval_locally("--expr", "42")
    assert run.code == 1 and "evaluates to a int, not an attribute set" in run.stderr
