"""Every line evix prints is UTF-8 JSON, whatever bytes Nix has in a name: an attribute
whose name is not UTF-8 is its own error event (bytes shown as \\xNN), and its siblings are
evaluated as usual. Locally and through the daemon, which print the same lines."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import short_dir, start_daemon
from evix_helpers import run_evix
from evix_helpers import nix_drv_paths

# `builtins.substring 0 1 "é"` is the lone byte 0xC3: a name (or string) that is not UTF-8.
JOBS = r"""
let
  mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };
  bad = builtins.substring 0 1 "é";
in {
  sub = { recurseForDerivations = true; ok1 = mk "ok1"; ok2 = mk "ok2"; ${bad} = mk "bad"; };
  ${bad + "set"} = { recurseForDerivations = true; hidden = mk "hidden"; };
  "é" = mk "accent";
  odd = derivation { name = "odd"; system = "x-${bad}"; builder = "/bin/sh"; };
}
"""
INVALID = "attribute name is not valid UTF-8"


@pytest.fixture
def work() -> Iterator[Path]:
    d = short_dir()
    (d / "jobs.nix").write_text(JOBS)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _events(stdout: bytes) -> list[dict]:
    return [json.loads(line.decode("utf-8")) for line in stdout.splitlines()]  # strict UTF-8


def test_a_name_that_is_not_utf8_is_its_own_error_and_its_siblings_are_evaluated(work: Path) -> None:
    run = run_evix("eval", "--no-daemon", "--file", "jobs.nix", cwd=work)
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    events = {e["attr"]: e for e in _events(run.stdout)}
    # the bad child of `sub`, and the bad set at the top, are errors naming them escaped
    for attr, path in (('sub."\\\\xc3"', ["sub", "\\xc3"]), ('"\\\\xc3set"', ["\\xc3set"])):
        assert events[attr]["attrPath"] == path
        assert INVALID in events[attr]["error"] and events[attr]["fatal"] is False
    assert "hidden" not in run.stdout.decode()  # an unreadable set is not walked into
    assert "\\xc3" in events["sub"]["attrs"] and "\\xc3set" in events[""]["attrs"]
    # everything else is evaluated as usual: a valid non-ASCII name, and the siblings
    truth = nix_drv_paths((work / "jobs.nix").read_text(), [["sub", "ok1"], ["sub", "ok2"], ["é"]], cwd=work)
    for attr in ("sub.ok1", "sub.ok2"):
        assert events[attr]["drvPath"] == truth[attr]
    assert events['"é"']["drvPath"] == truth["é"]
    # a string that is not UTF-8 (here a system) is escaped the same way
    assert events["odd"]["system"] == "x-\\xc3" and events["odd"]["drvPath"].endswith("-odd.drv")


def test_the_daemon_prints_the_same_valid_lines(work: Path) -> None:
    daemon = start_daemon(work / "evix.sock")
    through = run_evix("eval", "--file", "jobs.nix", cwd=work, socket_path=daemon.socket)
    local = run_evix("eval", "--no-daemon", "--file", "jobs.nix", cwd=work)
    assert through.code == 0, through.stderr
    assert "internal error" not in through.stderr
    assert sorted(through.stdout.splitlines()) == sorted(local.stdout.splitlines())
    assert any(INVALID in e.get("error", "") for e in _events(through.stdout))
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log
