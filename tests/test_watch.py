"""`evix watch` in this process (--no-daemon), on real files and the real Nix: every kind of
change, bad states and recovery, flake path inputs, bursts and changes during an evaluation."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from evix_helpers import nix_bin, nix_drv_paths, run_evix, wait_until
from nix_helpers import derivation_nix, nix_flake_lock
from evixd.engine.watch_paths import path_inputs, read_lock
from protocol.environment import EVALUATOR_NAME, TEMPLATE_NAME
from process_watch import evaluators
from watch_helpers import Watching, inotify_watches, path_input_flake

JOBS = "{ %s }"


def jobs(**names: str) -> str:
    """A jobs file: attribute -> derivation name."""
    return JOBS % " ".join(f"{attr} = {derivation_nix(name)};" for attr, name in names.items())


def truth(source: str, attr: str) -> str:
    return nix_drv_paths(source, [[attr]])[attr]


def test_edit_add_remove_syntax_error_and_recovery(tmp_path: Path) -> None:
    f = tmp_path / "jobs.nix"
    f.write_text(jobs(a="a-1", b="b-1"))
    with Watching("--no-daemon", "--file", "jobs.nix", cwd=tmp_path) as w:
        w.wait_events({"a", "b"})
        assert [e["attr"] for e in w.events] == ["", "a", "b"]  # as `evix eval` prints them

        f.write_text(jobs(a="a-2", b="b-1"))
        (edit,) = w.wait_diffs(1)
        assert [c["attr"] for c in edit["changed"]] == ["a"] and not edit["added"] and not edit["removed"]
        assert edit["changed"][0]["drvPath"] == truth(jobs(a="a-2", b="b-1"), "a")
        assert edit["changed"][0]["oldDrvPath"] == truth(jobs(a="a-1", b="b-1"), "a")

        f.write_text(jobs(a="a-2", b="b-1", c="c-1"))
        added = w.wait_diffs(2)[1]
        assert [e["attr"] for e in added["added"]] == ["c"] and not added["changed"]
        assert added["added"][0]["drvPath"] == truth(jobs(c="c-1"), "c")

        f.write_text(jobs(a="a-2", c="c-1"))
        removed = w.wait_diffs(3)[2]
        assert [e["attr"] for e in removed["removed"]] == ["b"] and not removed["added"]

        f.write_text("{ a = ")
        broken = w.wait_diffs(4)[3]
        assert len(broken["errors"]) == 1 and "syntax error" in broken["errors"][0]["error"]
        assert str(f) in broken["errors"][0]["error"]

        f.write_text(jobs(a="a-3", c="c-1"))
        recovered = w.wait_diffs(5)[4]
        assert recovered["errors"] == []  # compared with the last good state
        assert [c["attr"] for c in recovered["changed"]] == ["a"] and not recovered["added"]
        assert recovered["changed"][0]["drvPath"] == truth(jobs(a="a-3"), "a")
    assert w.proc.returncode == 128 + signal.SIGINT


def test_deleted_directory_is_an_error_and_watching_resumes(tmp_path: Path) -> None:
    d = tmp_path / "src"
    d.mkdir()
    (d / "jobs.nix").write_text(jobs(a="a-1"))
    with Watching("--no-daemon", "--file", "src/jobs.nix", "--workers", "1", cwd=tmp_path) as w:
        w.wait_events({"a"})
        shutil.rmtree(d)
        (gone,) = w.wait_diffs(1)
        assert "no such file" in gone["errors"][0]["error"]
        d.mkdir()
        (d / "jobs.nix").write_text(jobs(a="a-2"))
        back = w.wait_diffs(2)[-1]
        assert back["errors"] == [] and back["changed"][0]["drvPath"] == truth(jobs(a="a-2"), "a")


def test_editor_files_and_git_do_not_trigger(tmp_path: Path) -> None:
    """Swap files, .git and a `result` link change nothing; the next real edit is the first diff."""
    (tmp_path / "jobs.nix").write_text(jobs(a="a-1"))
    (tmp_path / ".git").mkdir()
    with Watching("--no-daemon", "--file", "jobs.nix", cwd=tmp_path) as w:
        w.wait_events({"a"})
        (tmp_path / ".jobs.nix.swp").write_text("x")
        (tmp_path / "jobs.nix~").write_text("x")
        (tmp_path / ".git" / "index").write_text("x")
        (tmp_path / "result").symlink_to("/nix/store")
        time.sleep(1)  # far past the debounce: had they counted, a diff of nothing would come first
        (tmp_path / "jobs.nix").write_text(jobs(a="a-2"))
        (first,) = w.wait_diffs(1)
        assert [c["name"] for c in first["changed"]] == ["a-2"]


def test_edit_in_a_flake_path_input_triggers_as_if_relocked(tmp_path: Path) -> None:
    root, dep = tmp_path / "main", tmp_path / "dep"
    path_input_flake(root, dep, "one")
    lock = nix_flake_lock(root)
    # the absolute input is locked by its hash, the relative one is part of the root's tree
    assert path_inputs(str(root), read_lock(str(root / "flake.lock"))) == [("dep", str(dep), True), ("sub", str(root / "sub"), False)]
    with Watching("--no-daemon", "--flake", ".#hydraJobs", cwd=root) as w:
        w.wait_events({"hello"})
        (dep / "flake.nix").write_text('{ outputs = { self }: { word = "two"; }; }\n')
        (first,) = w.wait_diffs(1)
        assert [c["name"] for c in first["changed"]] == ["hello-two-s1"]  # the hash-locked input, re-locked
        (root / "sub" / "flake.nix").write_text('{ outputs = { self }: { word = "s2"; }; }\n')
        (diff,) = w.wait_diffs(2)[1:]
    assert [c["name"] for c in diff["changed"]] == ["hello-two-s2"]
    relocked = subprocess.run(
        [nix_bin("nix"), "--extra-experimental-features", "nix-command flakes", "eval", "--raw",
         f"path:{root}#hydraJobs.hello.drvPath", "--override-input", "dep", f"path:{dep}"],
        capture_output=True, text=True, check=True).stdout
    assert diff["changed"][0]["drvPath"] == relocked
    assert (root / "flake.lock").read_text() == lock  # the user's lock is never written


def _names(diff: dict[str, Any]) -> list[str]:
    return [c["name"] for c in diff["changed"]]


def test_a_watched_file_counts_alone_in_its_directory(tmp_path: Path) -> None:
    """--watch FILE: a new directory (or a sibling) beside it gets no watch and is no change."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "name.nix").write_text('"a-1"')
    (tmp_path / "src").mkdir()
    source = "{ a = derivation { name = import %s; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }; }"
    (tmp_path / "src" / "jobs.nix").write_text(source % (lib / "name.nix"))
    with Watching("--no-daemon", "--file", "src/jobs.nix", "--watch", "lib/name.nix", cwd=tmp_path) as w:
        w.wait_events({"a"})
        watches = inotify_watches(w.proc.pid)
        (lib / "new" / "deeper").mkdir(parents=True)
        (lib / "new" / "deeper" / "f.nix").write_text("1")
        (lib / "sibling.nix").write_text("1")
        time.sleep(1)  # far past the debounce: had they counted, a diff of nothing would come first
        assert inotify_watches(w.proc.pid) == watches
        (lib / "name.nix").write_text('"a-2"')
        (first,) = w.wait_diffs(1)
        assert _names(first) == ["a-2"]
        assert first["changed"][0]["drvPath"] == truth(source % (lib / "name.nix"), "a")


BURST = """builtins.mapAttrs (n: _: derivation {
  name = n; system = "x86_64-linux"; builder = "/bin/sh"; src = builtins.readFile (./d + "/${n}"); })
  (builtins.readDir ./d)
"""


def test_a_burst_of_50_files_gives_one_diff(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "jobs.nix").write_text(BURST)
    with Watching("--no-daemon", "--file", "jobs.nix", "--debounce", "0.3", cwd=tmp_path) as w:
        wait_until(lambda: w.events, "the first evaluation")
        for i in range(50):
            (tmp_path / "d" / f"p{i:02}").write_text(str(i))
        (diff,) = w.wait_diffs(1)
        assert len(diff["added"]) == 50
        time.sleep(1.5)  # room for a second diff, which must not come
        assert len(w.diffs) == 1


# `version` is read as the input loads (the root is forced then), the slow part after the fork
SLOW = """let v = builtins.readFile ./version; in builtins.seq v {
  a = derivation { name = "a-${v}"; system = "x86_64-linux"; builder = "/bin/sh";
    work = toString (builtins.foldl' (x: y: x + y) 0 (builtins.genList (j: j) 3000000)); };
}
"""


def test_a_change_during_an_evaluation_gives_one_more(tmp_path: Path) -> None:
    (tmp_path / "version").write_text("1")
    (tmp_path / "jobs.nix").write_text(SLOW)
    with Watching("--no-daemon", "--file", "jobs.nix", cwd=tmp_path) as w:
        w.wait_events({"a"}, timeout=120)
        def spare_only() -> bool:  # the first run's template and forks gone, the spare not set up yet
            found = evaluators(w.tag)
            return len(found) == 1 and not _named(found[0], TEMPLATE_NAME, EVALUATOR_NAME)

        wait_until(spare_only, "the spare worker between evaluations", timeout=60)
        (tmp_path / "version").write_text("2")
        # the spare became the template (it loaded version 2; it warms or forks the slow part
        # next): the re-evaluation is running
        wait_until(lambda: any(_named(p, TEMPLATE_NAME, EVALUATOR_NAME) for p in evaluators(w.tag)),
                   "the re-evaluation to run", timeout=60)
        (tmp_path / "version").write_text("3")
        first, second = w.wait_diffs(2, timeout=120)
        assert [c["name"] for c in first["changed"]] == ["a-2"]
        assert [c["name"] for c in second["changed"]] == ["a-3"]  # not lost
        time.sleep(1)
        assert len(w.diffs) == 2


def _named(process: psutil.Process, *names: str) -> bool:
    try:
        return process.name() in names
    except psutil.Error:
        return False


def test_what_has_nothing_on_disk_is_refused(tmp_path: Path) -> None:
    expr = run_evix("watch", "--no-daemon", "--expr", "{ }", cwd=tmp_path)
    assert expr.code == 2 and "--expr cannot be watched: there is no file on disk to watch" in expr.stderr
    remote = run_evix("watch", "--no-daemon", "--flake", "github:NixOS/nixpkgs#hello", cwd=tmp_path)
    assert remote.code == 1 and "is not a local flake: there is nothing on disk to watch" in remote.stderr
    assert remote.stdout == b"" and "Traceback" not in remote.stderr
