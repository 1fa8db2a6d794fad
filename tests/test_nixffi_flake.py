"""Local flakes: `nixffi.load_flake` gives the drvPaths `nix eval` gives, with and without
`--override-input`. The flakes live in temporary directories (not git), locked by the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import nixffi
from nix_helpers import nix_cli, nix_eval_raw, nix_flake_lock, write_nix

DRV = 'derivation { name = "%s"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ %s ]; }'


@dataclass
class Flakes:
    root: Path  # inputs: dep (relative path:./dep), other (absolute path:), sub (path:...?dir=sub)
    lock: str
    alt_dep: Path  # a different flake to override inputs with
    alt_other: Path


@pytest.fixture(scope="module")
def flakes(tmp_path_factory: pytest.TempPathFactory) -> Flakes:
    base = tmp_path_factory.mktemp("flakes")
    root, other, multi = base / "root", base / "other", base / "multi"
    write_nix(root, "flake.nix", f"""
        {{
          inputs.dep.url = "path:./dep";
          inputs.other.url = "path:{other}";
          inputs.sub.url = "path:{multi}?dir=sub";
          outputs = {{ self, dep, other, sub }}: {{
            x = {DRV % ("evix-flake-x", '"-c" "${dep.script} ${other} ${sub} ${sub.sourceInfo} ${sub.here}"')};
            y = {DRV % ("evix-flake-y", '"${self}" other.value')};
            packages.x86_64-linux.default = {DRV % ("evix-flake-pkg", '"${self.x}" dep.script')};
            multi = derivation {{ name = "evix-flake-multi"; system = "x86_64-linux"; builder = "/bin/sh";
                                 outputs = [ "out" "lib" ]; args = [ "${{self.x}}" ]; }};
          }};
        }}
    """)
    write_nix(root, "dep/flake.nix", '{ outputs = { self }: { script = "echo dep ${self}"; }; }')
    write_nix(root, "README", "part of the root flake's source\n")
    write_nix(other, "flake.nix", '{ outputs = { self }: { value = "other"; }; }')
    write_nix(multi, "sub/flake.nix", '{ outputs = { self }: { here = "${self}"; }; }')
    write_nix(multi, "elsewhere.txt", "outside the subdirectory\n")
    alt_dep = write_nix(base, "alt-dep/flake.nix", '{ outputs = { self }: { script = "echo alt ${self}"; value = "alt"; here = "alt"; }; }').parent
    alt_other = write_nix(base, "alt-other/flake.nix", '{ outputs = { self }: { value = "alt-other"; }; }').parent
    lock = nix_flake_lock(root)
    return Flakes(root=root, lock=lock, alt_dep=alt_dep, alt_other=alt_other)


def flake_attr(state: nixffi.EvalState, ref: str, attr: str, **kwargs: object) -> str:
    value = nixffi.load_flake(state, ref, **kwargs).get("outputs")
    for part in attr.split("."):
        value = value.get(part)
    return value.as_str()


@pytest.mark.parametrize("attr", ["x.drvPath", "y.drvPath", "packages.x86_64-linux.default.drvPath",
                                  "multi.lib.drvPath", "multi.lib.outPath"])
def test_flake_matches_nix_eval(nix_state: nixffi.EvalState, flakes: Flakes, attr: str) -> None:
    ref = f"path:{flakes.root}"
    ours = flake_attr(nix_state, ref, attr)
    assert ours == nix_eval_raw(f"{ref}#{attr}")
    assert ours == nix_eval_raw(f".#{attr}", cwd=flakes.root)


def test_inputs_not_overridden_come_from_the_lock(nix_state: nixffi.EvalState, flakes: Flakes) -> None:
    """With overrides, load_flake takes every other input from `lock_json`, not from flake.nix:
    a lock that pins `other` to another flake gives what `nix eval` gives with `other` there."""
    lock = json.loads(flakes.lock)
    node = lock["nodes"][lock["root"]]["inputs"]["other"]
    alt_other = f"path:{flakes.alt_other}"
    locked = json.loads(nix_cli("flake", "metadata", "--json", alt_other))["locked"]
    lock["nodes"][node]["locked"] = {k: v for k, v in locked.items() if k != "__final"}  # as a lock file has it
    ref, dep = f"path:{flakes.root}", {"dep": f"path:{flakes.alt_dep}"}  # y does not read dep
    repinned = flake_attr(nix_state, ref, "y.drvPath", overrides=dep, lock_json=json.dumps(lock))
    assert repinned == nix_eval_raw(f"{ref}#y.drvPath", "--override-input", "other", alt_other)
    assert repinned != flake_attr(nix_state, ref, "y.drvPath", overrides=dep, lock_json=flakes.lock)


@pytest.mark.parametrize("name", ["dep", "other", "sub"])
def test_override_input_matches_nix_eval(nix_state: nixffi.EvalState, flakes: Flakes, name: str) -> None:
    """load_flake(overrides=...) = `nix eval --override-input NAME path:...` (the others stay locked)."""
    ref = f"path:{flakes.root}"
    new = f"path:{flakes.alt_other if name == 'other' else flakes.alt_dep}"
    ours = flake_attr(nix_state, ref, "x.drvPath", overrides={name: new}, lock_json=flakes.lock)
    assert ours == nix_eval_raw(f"{ref}#x.drvPath", "--override-input", name, new)
    assert ours != flake_attr(nix_state, ref, "x.drvPath"), "the override must change the derivation"


def test_override_two_inputs(nix_state: nixffi.EvalState, flakes: Flakes) -> None:
    ref = f"path:{flakes.root}"
    overrides = {"dep": f"path:{flakes.alt_dep}", "other": f"path:{flakes.alt_other}"}
    ours = flake_attr(nix_state, ref, "packages.x86_64-linux.default.drvPath", overrides=overrides, lock_json=flakes.lock)
    cli_args = [a for n, r in overrides.items() for a in ("--override-input", n, r)]
    assert ours == nix_eval_raw(f"{ref}#packages.x86_64-linux.default.drvPath", *cli_args)


def test_flake_error_has_nix_message(nix_state: nixffi.EvalState, tmp_path: Path) -> None:
    write_nix(tmp_path, "flake.nix", '{ outputs = { self }: { x = throw "evix test: flake throws"; }; }')
    with pytest.raises(nixffi.NixError) as e:
        nixffi.load_flake(nix_state, f"path:{tmp_path}").get("outputs").get("x").force()
    assert "evix test: flake throws" in e.value.message
    assert e.value.error_type == "nix::ThrownError"
