"""Shared fixtures: the bootstrapped Nix on PATH, Nix CLI helpers, one shared nixffi EvalState.

Fixtures for everyone:
    nix_env          dict: the environment (PATH has the bootstrapped Nix) for subprocesses
    nix_instantiate  (expr_or_file, *args, cwd=None) -> drvPath printed by nix-instantiate
                     (a pathlib.Path is a file, a str an expression)
    nix_eval_json    (expr_or_file, *args, cwd=None) -> parsed `nix-instantiate --eval --strict --json`
    nix_eval_error   (expr_or_file, *args, cwd=None) -> stderr of a failing `nix-instantiate --eval`
    nix_eval_raw     (installable, *args, cwd=None) -> stdout of `nix eval --raw`
    write_nix        (directory, name, text) -> Path of the written (dedented) file
    nix_store        session nixffi.Store() (the real /nix/store)
    nix_state        session nixffi.EvalState, created after nixffi.enable_flakes()
More helpers (flake locking, trio variants) are in tests/nix_helpers.py.

nixffi is imported only inside fixtures, so suites that do not use it still collect when
the extension is not built. Use nixffi from the main thread only (trio tests run there too;
never from `trio.to_thread`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import nix_helpers  # noqa: E402

try:
    NIX_BIN = nix_helpers.ensure_nix_on_path()
except RuntimeError as e:  # a clear message instead of many confusing failures
    raise pytest.UsageError(str(e)) from None


@pytest.fixture(scope="session")
def nix_env() -> dict[str, str]:
    """A copy of the environment whose PATH starts with (or has) the bootstrapped Nix."""
    return dict(os.environ)


@pytest.fixture(scope="session")
def nix_instantiate(nix_env: dict[str, str]) -> Callable[..., str]:
    return nix_helpers.nix_instantiate


@pytest.fixture(scope="session")
def nix_eval_json(nix_env: dict[str, str]) -> Callable[..., Any]:
    return nix_helpers.nix_eval_json


@pytest.fixture(scope="session")
def nix_eval_error(nix_env: dict[str, str]) -> Callable[..., str]:
    return nix_helpers.nix_eval_error


@pytest.fixture(scope="session")
def nix_eval_raw(nix_env: dict[str, str]) -> Callable[..., str]:
    return nix_helpers.nix_eval_raw


@pytest.fixture(scope="session")
def write_nix() -> Callable[[str | os.PathLike[str], str, str], Path]:
    return nix_helpers.write_nix


@pytest.fixture(scope="session")
def nix_store() -> Any:
    """The default store (as root: the local /nix/store), opened once per session."""
    import nixffi

    return nixffi.Store()


@pytest.fixture(scope="session")
def nix_state(nix_store: Any) -> Iterator[Any]:
    """One EvalState for the session, made after `enable_flakes()` so `getFlake` works."""
    import nixffi

    nixffi.enable_flakes()
    yield nixffi.EvalState(nix_store)
