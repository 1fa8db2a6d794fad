"""A local input the remote machine cannot see: the master ships its tree (once, by content
hash) and the remote evaluates it to the drvPaths the master's own Nix computes. The remote
runs in its own mount namespace, where the input's directory is hidden under a tmpfs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from evix_helpers import eval_locally
from nix_helpers import nix_instantiate_all
from remote_helpers import listen_args, remote_env, services

SOURCE = """
let
  lib = import ./lib.nix;
in {
  data = lib.mk "data" { src = ./data.txt; };
  tree = lib.mk "tree" { src = ./.; };
  nested = { recurseForDerivations = true; leaf = lib.mk "leaf" { src = ./sub/leaf.txt; }; };
}
"""


def _project(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "default.nix").write_text(SOURCE)
    (root / "lib.nix").write_text('{ mk = name: attrs: derivation ({ inherit name; system = "x86_64-linux"; '
                                  'builder = "/bin/sh"; } // attrs); }\n')
    (root / "data.txt").write_text("some data\n")
    (root / "sub" / "leaf.txt").write_text("a leaf\n")
    return root / "default.nix"


def test_an_input_the_remote_cannot_see_is_shipped_and_gives_the_same_drv_paths(tmp_path: Path):
    project = tmp_path / "project"
    entry = _project(project)
    truth = nix_instantiate_all(entry, "-A", "data", "-A", "tree", "-A", "nested.leaf")
    cache = tmp_path / "cache"
    hide = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(project)]
    with services(listen_args(cache=cache), prefix=hide) as (service,):
        run = eval_locally("--file", str(entry), "--workers", "0", "--remote", service.endpoint, "", "2",
                           env=remote_env())
        again = eval_locally("--file", str(entry), "--workers", "0", "--remote", service.endpoint, "", "1",
                             env=remote_env())
    assert run.code == 0, run.stderr + service.log
    drvs = run.derivations()
    assert [drvs[a]["drvPath"] for a in ("data", "tree", "nested.leaf")] == truth
    assert again.code == 0 and again.canonical() == run.canonical()
    shipped = [p for p in cache.iterdir() if (p / ".complete").exists()]
    assert len(shipped) == 1 and (shipped[0] / "project" / "sub" / "leaf.txt").read_text() == "a leaf\n"


def test_a_remote_flake_reference_reaches_the_remote_locked(tmp_path: Path):
    flake = tmp_path / "src" / "flake"
    flake.mkdir(parents=True)
    (flake / "flake.nix").write_text('{ outputs = { self }: { jobs = { a = derivation { name = "a"; '
                                     'system = "x86_64-linux"; builder = "/bin/sh"; src = ./flake.nix; }; }; }; }\n')
    archive = tmp_path / "flake.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(flake.parent), "flake"], check=True, timeout=30)
    ref = f"tarball+file://{archive}"
    local = eval_locally("--flake", f"{ref}#jobs")
    assert local.code == 0, local.stderr
    with services(listen_args()) as (service,):
        run = eval_locally("--flake", f"{ref}#jobs", "--workers", "0", "--remote", service.endpoint, "", "1",
                           env=remote_env())
    assert run.code == 0, run.stderr
    assert run.canonical() == local.canonical()
    served = re.search(r"serving --flake (\S+)", service.log)
    assert served and "narHash=sha256-" in served.group(1), service.log


def test_a_local_flake_the_remote_cannot_see_is_shipped(tmp_path: Path):
    flake = tmp_path / "hidden" / "myflake"
    flake.mkdir(parents=True)
    (flake / "data.txt").write_text("flake data\n")
    (flake / "flake.nix").write_text('{ outputs = { self }: { jobs = { a = derivation { name = "a"; '
                                     'system = "x86_64-linux"; builder = "/bin/sh"; src = ./data.txt; '
                                     'tree = self; }; }; }; }\n')
    local = eval_locally("--flake", f"{flake}#jobs")
    assert local.code == 0, local.stderr
    hide = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(flake.parent)]
    with services(listen_args(cache=tmp_path / "cache"), prefix=hide) as (service,):
        run = eval_locally("--flake", f"{flake}#jobs", "--workers", "0", "--remote", service.endpoint, "", "1",
                           env=remote_env())
    assert run.code == 0, run.stderr + service.log
    assert run.canonical() == local.canonical()
    assert str(tmp_path / "cache") in service.log  # evaluated from the shipped copy
