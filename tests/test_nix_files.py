"""flake.nix and nix/*.nix (issue 13), checked with the bootstrapped Nix and no nixpkgs: they
parse; the NixOS and home-manager modules, evaluated with a small stand-in for the parts of
lib they use (tests/nix/), generate the units of systemd/ (same keys and values; only the
binary's path differs) and apply their options; the worker's start script reads its token
from the credential; and the flake's outputs have the shape Nix users install from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evix_helpers import REPO, nix_bin

STUBS = REPO / "tests" / "nix"
NIX_FILES = [REPO / "flake.nix", *sorted((REPO / "nix").glob("*.nix")), *sorted(STUBS.glob("*.nix"))]
PACKAGE = "/nix/store/00000000000000000000000000000000-evix-0.1.0"  # the stand-in package's outPath


def nix_eval(expr: str) -> Any:
    out = subprocess.run([nix_bin("nix-instantiate"), "--eval", "--strict", "--json", "-E", expr],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def module_config(module: str, settings: str) -> dict[str, Any]:
    """`config` of nix/`module` with services.evix set as `settings` (a Nix attrset)."""
    return nix_eval(f"""
      let
        pkgs = import {STUBS}/stub-pkgs.nix {{ }};
        evix = pkgs.python3.pkgs.buildPythonApplication {{ pname = "evix"; version = "0.1.0"; }};
        ev = import {STUBS}/eval-module.nix {{ }} {{
          modules = [ {REPO}/nix/{module} ];
          inherit pkgs;
          settings.services.evix = {{ package = evix; }} // {settings};
        }};
      in ev.config""")


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections: {section: {key: [values, in order]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key, []).append(value)
    return sections


def ini_value(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v for item in value for v in ini_value(item)]
    if isinstance(value, bool):
        return ["yes" if value else "no"]
    return [str(value)]


def as_sections(generated: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    return {section: {k: ini_value(v) for k, v in keys.items()} for section, keys in generated.items()}


def nixos_sections(unit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """NixOS's unitConfig/serviceConfig/socketConfig/wantedBy as the INI sections they become."""
    names = {"unitConfig": "Unit", "serviceConfig": "Service", "socketConfig": "Socket"}
    sections = {names[k]: v for k, v in unit.items() if k in names}
    if "wantedBy" in unit:
        sections["Install"] = {"WantedBy": unit["wantedBy"]}
    return sections


# What the modules add to systemd/'s units on purpose: the log level, from services.evix.logLevel.
ADDED = {("Service", "Environment")}


def assert_matches_systemd_dir(generated: dict[str, dict[str, list[str]]], name: str, *, install: bool) -> None:
    expected = unit_file(REPO / "systemd" / name)
    if not install:  # NixOS enables units with wantedBy links, not [Install]: only WantedBy is kept
        expected["Install"] = {k: v for k, v in expected.get("Install", {}).items() if k == "WantedBy"}
        expected = {s: keys for s, keys in expected.items() if keys}
    if "Service" in expected:
        expected["Service"]["ExecStart"] = [v.replace("/usr/bin/env evixd", f"{PACKAGE}/bin/evixd")
                                            for v in expected["Service"]["ExecStart"]]
    assert set(generated) == set(expected)
    for section, keys in expected.items():
        extra = {k for k in generated[section] if k not in keys and (section, k) not in ADDED}
        assert not extra, f"{name} [{section}]: keys not in systemd/{name}: {extra}"
        for key, values in keys.items():
            assert generated[section].get(key) == values, f"{name} [{section}] {key}"


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_parses(path: Path) -> None:
    out = subprocess.run([nix_bin("nix-instantiate"), "--parse", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_nixos_module_generates_the_units_of_systemd_dir() -> None:
    config = module_config("module.nix", "{ enable = true; }")
    user = config["systemd"]["user"]
    assert_matches_systemd_dir(as_sections(nixos_sections(user["sockets"]["evixd"])), "evixd.socket", install=False)
    assert_matches_systemd_dir(as_sections(nixos_sections(user["services"]["evixd"])), "evixd.service", install=False)
    assert user["services"]["evixd"]["serviceConfig"]["Environment"] == ["EVIX_LOG=info"]
    assert config["environment"]["systemPackages"] == [PACKAGE]
    assert "services" not in config["systemd"]  # no worker unless asked


def test_home_manager_module_generates_the_units_of_systemd_dir() -> None:
    config = module_config("home-manager.nix", "{ enable = true; }")
    user = config["systemd"]["user"]
    assert_matches_systemd_dir(as_sections(user["sockets"]["evixd"]), "evixd.socket", install=True)
    assert_matches_systemd_dir(as_sections(user["services"]["evixd"]), "evixd.service", install=True)
    assert config["home"]["packages"] == [PACKAGE]


def test_disabled_modules_generate_nothing() -> None:
    assert module_config("module.nix", "{ }") == {}
    assert module_config("home-manager.nix", "{ }") == {}


def test_socket_path_log_level_and_limits_reach_the_units() -> None:
    settings = ('{ enable = true; socketPath = "%t/evix/main.sock"; logLevel = "debug"; maxSessions = 4; '
                'maxSessionMemory = 2048; warmSeconds = 30; maxWorkers = 8; extraArgs = [ "--max-connections" "9" ]; }')
    for module in ("module.nix", "home-manager.nix"):
        user = module_config(module, settings)["systemd"]["user"]
        service, socket = user["services"]["evixd"], user["sockets"]["evixd"]
        service = service.get("serviceConfig", service.get("Service"))
        socket = socket.get("socketConfig", socket.get("Socket"))
        assert socket["ListenStream"] == "%t/evix/main.sock"
        assert service["Environment"] == ["EVIX_LOG=debug"]
        args = service["ExecStart"].split()
        assert args[:4] == [f"{PACKAGE}/bin/evixd", "--foreground", "--socket", "%t/evix/main.sock"]
        pairs = dict(zip(args[4::2], args[5::2]))
        assert pairs == {"--max-sessions": "4", "--max-session-memory": "2048", "--warm-seconds": "30",
                         "--max-workers": "8", "--max-connections": "9"}


def test_worker_runs_as_a_hardened_system_service_with_its_token_from_a_file() -> None:
    config = module_config("module.nix", '{ worker = { enable = true; listen = "0.0.0.0:7790"; '
                                         'tokenFile = "/run/keys/evix-token"; openFirewall = true; }; }')
    unit = config["systemd"]["services"]["evix-worker"]
    service = unit["serviceConfig"]
    assert service["LoadCredential"] == "token:/run/keys/evix-token"
    assert service["ExecStart"].endswith("-evix-worker-start")
    assert {"DynamicUser", "NoNewPrivileges", "ProtectHome", "PrivateTmp"} <= {k for k, v in service.items() if v is True}
    assert service["ProtectSystem"] == "strict"
    assert unit["wantedBy"] == ["multi-user.target"]
    assert config["networking"]["firewall"]["allowedTCPPorts"] == [7790]
    assert "user" not in config["systemd"]  # the daemon stays off unless enabled


def test_worker_start_script_passes_the_credential_as_evix_remote_token(tmp_path: Path) -> None:
    """The generated script, run by bash with a stand-in `evix` that shows what it was given."""
    package = tmp_path / "evix"
    (package / "bin").mkdir(parents=True)
    (package / "bin" / "evix").write_text('#!/bin/sh\necho "args: $*"\necho "token: $EVIX_REMOTE_TOKEN"\n')
    (package / "bin" / "evix").chmod(0o755)
    script = nix_eval(f"""(import {REPO}/nix/units.nix {{ lib = import {STUBS}/stub-lib.nix; }}).workerScript
      {{ package = "{package}"; listen = "10.0.0.5:7788"; extraArgs = [ "-v" ]; }}""")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "token").write_text("s3cret")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, CREDENTIALS_DIRECTORY=str(credentials)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["args: worker --listen 10.0.0.5:7788 -v", "token: s3cret"]
    assert "s3cret" not in script


FLAKE = f"""
  let
    lib = import {STUBS}/stub-lib.nix;
    flake = import {REPO}/flake.nix;
    nixpkgs = {{ inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ]
      (system: import {STUBS}/stub-pkgs.nix {{ inherit system; }}); }};
    self = flake.outputs {{ inherit self nixpkgs; }};
  in self"""


def test_flake_outputs_cover_both_systems() -> None:
    shape = nix_eval(f"""let self = {FLAKE}; names = builtins.attrNames; in {{
      top = names self; packages = builtins.mapAttrs (_: names) self.packages;
      devShells = builtins.mapAttrs (_: names) self.devShells; checks = builtins.mapAttrs (_: names) self.checks;
      modules = [ (builtins.isFunction self.nixosModules.default) (builtins.isFunction self.homeManagerModules.default) ];
      overlay = (self.overlays.default (import {STUBS}/stub-pkgs.nix {{ }}) {{ }}).evix.name; }}""")
    assert {"packages", "devShells", "overlays", "nixosModules", "homeManagerModules", "checks"} <= set(shape["top"])
    for system in ("x86_64-linux", "aarch64-linux"):
        assert shape["packages"][system] == ["default", "evix"]
        assert shape["devShells"][system] == ["default"]
        assert shape["checks"][system] == ["package", "tests"]
    assert shape["modules"] == [True, True]
    assert shape["overlay"] == "evix-0.1.0"


def test_flake_package_builds_against_the_nix_c_api_and_the_modules_default_to_it() -> None:
    facts = nix_eval(f"""let self = {FLAKE}; evix = self.packages.aarch64-linux.evix;
      pkgs = import {STUBS}/stub-pkgs.nix {{ system = "aarch64-linux"; }};
      ev = import {STUBS}/eval-module.nix {{ }} {{ modules = [ self.nixosModules.default ]; inherit pkgs;
                                                 settings.services.evix.enable = true; }};
      in {{ inputs = map (d: d.name) evix.buildInputs; program = evix.meta.mainProgram;
           same = self.packages.aarch64-linux.default == evix; imports = evix.pythonImportsCheck;
           moduleDefault = ev.options.services.evix.package.name; test = self.checks.x86_64-linux.tests.script; }}""")
    assert {f"{c}-dev" for c in ("nix-util-c", "nix-store-c", "nix-expr-c", "nix-flake-c", "nix-main-c")} <= set(facts["inputs"])
    assert facts["program"] == "evix" and facts["same"]
    assert {"nixffi", "evixd.daemon", "evix_client.main"} <= set(facts["imports"])
    assert facts["moduleDefault"] == "evix-0.1.0"
    assert "python -m pytest" in facts["test"] and "python nixffi/_build.py" in facts["test"]
