"""Workers forked from a template: what Nix's heap, its GC and its store need across fork(),
checked on real evaluations (drvPaths compared with nix-instantiate)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

from evix_helpers import eval_locally, nix_drv_paths, start_evix, wait_until
from protocol.environment import EVALUATOR_NAME, TEMPLATE_NAME

# Each package makes ~40 MiB of garbage before its drvPath: across the set, the forked
# workers' GC runs many times (Nix starts with a 384 MiB heap), on values the template made.
GARBAGE = """
let
  mk = i: derivation {
    name = "p${toString i}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    junk = toString (builtins.length (builtins.genList (j: { a = j; b = [ j i ]; }) 300000));
  };
in builtins.listToAttrs (builtins.genList (i: { name = "p${toString i}"; value = mk i; }) 24)
"""


def _truth(f: Path, n: int) -> dict[str, str]:
    return nix_drv_paths(f"import {f}", [[f"p{i}"] for i in range(n)])


def test_forked_workers_that_collect_garbage_often_evaluate_correctly(tmp_path: Path):
    f = tmp_path / "garbage.nix"
    f.write_text(GARBAGE)
    run = eval_locally("--file", str(f), "--workers", "2", timeout=300)
    assert run.code == 0, run.stderr
    assert {a: d["drvPath"] for a, d in run.derivations().items()} == _truth(f, 24)


def test_four_forks_writing_derivations_at_once_never_wait_on_each_other(tmp_path: Path):
    # Each fork shares the template's store temp-roots file: opened in each child instead,
    # every fork but one would wait forever on its lock (this hung 1 run in ~20).
    f = tmp_path / "many.nix"
    f.write_text('builtins.listToAttrs (builtins.genList (i: { name = "p${toString i}"; value = derivation '
                 '{ name = "many-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; }; }) 64)')
    truth = _truth(f, 64)
    for _ in range(5):
        run = eval_locally("--file", str(f), "--workers", "4", timeout=60)
        assert run.code == 0, run.stderr
        assert {a: d["drvPath"] for a, d in run.derivations().items()} == truth


def _processes(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for p in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.name() in (TEMPLATE_NAME, EVALUATOR_NAME):
                found.append(p)
    return found


def test_workers_are_forks_of_one_template_and_a_dead_template_costs_no_derivation(tmp_path: Path):
    f = tmp_path / "garbage.nix"
    f.write_text(GARBAGE)
    proc = start_evix("eval", "--no-daemon", "--file", str(f), "--workers", "2")
    try:
        cli = psutil.Process(proc.pid)

        def forks() -> list[psutil.Process]:
            found = _processes(cli)
            return found if sum(p.name() == EVALUATOR_NAME for p in found) >= 2 else []

        found = wait_until(forks, "two forked workers", timeout=60)
        (template,) = [p for p in found if p.name() == TEMPLATE_NAME]
        assert all(p.ppid() == template.pid for p in found if p.name() == EVALUATOR_NAME)
        os.kill(template.pid, signal.SIGKILL)  # its forks die with it; the run starts another
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line]
    import orjson

    events = [orjson.loads(line) for line in lines]
    assert not [e for e in events if "error" in e]  # nobody blamed for the template's death
    assert {e["attr"]: e["drvPath"] for e in events if "drvPath" in e} == _truth(f, 24)
