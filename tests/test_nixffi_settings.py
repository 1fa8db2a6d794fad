"""One-time init, Nix settings (incl. experimental features) and the library version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import nixffi
from nix_helpers import REPO_ROOT, error_lines, run

# Run in a fresh process: init twice, settings before any state, features switched on
# at run time (so the outcome does not depend on what other tests did first).
FRESH_PROCESS = r"""
import json, nixffi
out = {}
nixffi.init(); nixffi.init()
out["features_before"] = nixffi.get_setting("experimental-features").split()
store = nixffi.Store()
nixffi.init()
state = nixffi.EvalState(store)
out["sum"] = state.eval_string("1 + 2").as_int()
try:
    state.eval_string("1 |> toString")
    out["pipe_before"] = None
except nixffi.NixError as e:
    out["pipe_before"] = [e.error_type, e.message]
nixffi.enable_experimental_features("pipe-operators")
nixffi.enable_experimental_features("pipe-operators")  # idempotent
out["features_after"] = nixffi.get_setting("experimental-features").split()
out["pipe_after"] = nixffi.EvalState(store).eval_string("1 |> toString").as_str()
nixffi.enable_flakes(); nixffi.enable_flakes()
out["getflake"] = nixffi.EvalState(store).eval_string("builtins ? getFlake").as_bool()
print(json.dumps(out))
"""


def test_fresh_process_init_and_experimental_features() -> None:
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["sum"] == 3
    assert "pipe-operators" not in out["features_before"]
    # Nix's own refusal, with the same words the CLI prints
    error_type, message = out["pipe_before"]
    assert error_type == "nix::ParseError"
    assert "experimental Nix feature 'pipe-operators' is disabled" in message
    cli = run(["nix-instantiate", "--eval", "-E", "1 |> toString"], check=False)
    assert cli.returncode != 0
    assert error_lines(cli.stderr)[0] in message
    # enabling adds the feature and keeps the others
    assert "pipe-operators" in out["features_after"]
    assert set(out["features_before"]) <= set(out["features_after"])
    assert out["features_after"].count("pipe-operators") == 1
    assert out["pipe_after"] == run(["nix-instantiate", "--eval", "--json", "--extra-experimental-features",
                                     "pipe-operators", "-E", "1 |> toString"]).stdout.strip().strip('"')
    assert out["getflake"] is True


def test_init_idempotent_in_process(nix_state: nixffi.EvalState) -> None:
    nixffi.init()
    nixffi.init()
    assert nix_state.eval_string("6 * 7").as_int() == 42


def test_flakes_enabled_by_session_state(nix_state: nixffi.EvalState) -> None:
    features = nixffi.get_setting("experimental-features").split()
    assert "flakes" in features and "nix-command" in features
    assert nix_state.eval_string("builtins ? getFlake").as_bool()


def test_set_and_get_setting() -> None:
    old = nixffi.get_setting("cores")
    new = str(int(old or "0") + 3)
    try:
        nixffi.set_setting("cores", new)
        assert nixffi.get_setting("cores") == new
    finally:
        nixffi.set_setting("cores", old)
    assert nixffi.get_setting("cores") == old


@pytest.mark.parametrize("key", ["build-users-group", "substituters", "sandbox", "store", "max-jobs"])
def test_setting_same_as_cli(key: str) -> None:
    """The library reads the same nix.conf as the CLI: compare with `nix config show KEY`."""
    cli = run(["nix", "--extra-experimental-features", "nix-command", "config", "show", key])
    assert nixffi.get_setting(key) == cli.stdout.strip()


@pytest.mark.parametrize("call", [
    lambda: nixffi.get_setting("evix-no-such-setting"),
    lambda: nixffi.set_setting("evix-no-such-setting", "1"),
    lambda: nixffi.apply_setting("evix-no-such-setting", "1"),
], ids=["get", "set", "apply"])
def test_unknown_setting_raises(call: Any) -> None:
    with pytest.raises(nixffi.NixError) as e:
        call()
    assert e.value.code == -3  # NIX_ERR_KEY


def test_apply_setting_reaches_eval_state(nix_store: nixffi.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--option pure-eval true` equivalent: only eval states made afterwards are pure."""
    monkeypatch.setenv("NIX_CONFIG", os.environ.get("NIX_CONFIG", ""))  # restored after the test
    before = nixffi.EvalState(nix_store)
    nixffi.apply_setting("pure-eval", "true")
    assert "pure-eval = true" in os.environ["NIX_CONFIG"]
    pure = nixffi.EvalState(nix_store)
    with pytest.raises(nixffi.NixError) as e:
        pure.eval_string("builtins.currentTime").force()
    cli = run(["nix-instantiate", "--option", "pure-eval", "true", "--eval", "-E", "builtins.currentTime"], check=False)
    assert cli.returncode != 0
    assert error_lines(cli.stderr)[0] in e.value.message
    assert before.eval_string("builtins.currentTime").as_int() > 0


def test_nix_version_matches_cli() -> None:
    version = nixffi.nix_version()
    assert run(["nix", "--version"]).stdout.split()[-1] == version
    assert version.startswith("2.")
