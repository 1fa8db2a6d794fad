"""Helpers for tests that compare evix with the Nix CLI of the same (bootstrapped) Nix.

Everything here runs the real `nix-instantiate` / `nix` as subprocesses against the real
store; nothing is faked. `ensure_nix_on_path()` is called by conftest.py at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import trio

REPO_ROOT = Path(__file__).resolve().parent.parent
NIX_VERSION = "2.26.3"  # as in scripts/nix-paths.sh
FLAKE_FEATURES = ["--extra-experimental-features", "nix-command flakes"]
TIMEOUT = 300  # seconds for one CLI call: generous, the machine is shared


def default_nix_prefix() -> Path:
    """Where scripts/bootstrap-nix installs Nix (mirrors scripts/nix-paths.sh)."""
    if os.environ.get("EVIX_NIX_PREFIX"):
        return Path(os.environ["EVIX_NIX_PREFIX"])
    cache = os.environ.get("EVIX_CACHE_DIR")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache = os.path.join(xdg, "evix")
    return Path(cache) / f"nix-{NIX_VERSION}"


def ensure_nix_on_path() -> str:
    """Makes sure `nix-instantiate` is on PATH (prepending the bootstrapped Nix if needed).

    Returns the directory holding `nix-instantiate`; raises RuntimeError with the fix
    (scripts/dev setup) when there is no Nix at all.
    """
    found = shutil.which("nix-instantiate")
    if found:
        return os.path.dirname(found)
    bin_dir = default_nix_prefix() / "bin"
    if (bin_dir / "nix-instantiate").is_file():
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return str(bin_dir)
    raise RuntimeError(
        f"nix-instantiate is not on PATH and {bin_dir} has no Nix: run `scripts/dev setup` "
        "(it bootstraps Nix 2.26 with its C API), or run the tests through `scripts/dev test`."
    )


def write_nix(directory: str | os.PathLike[str], name: str, text: str) -> Path:
    """Writes `text` (dedented) to directory/name, creating parent directories; returns the path."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _source_args(expr_or_file: str | os.PathLike[str]) -> list[str]:
    """A path-like is a file (or directory) to evaluate; a str is a Nix expression."""
    if isinstance(expr_or_file, os.PathLike):
        return [os.fspath(expr_or_file)]
    return ["-E", expr_or_file]


def run(cmd: list[str], cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs a command with captured text output; with `check`, a failure shows its stderr."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed with {proc.returncode}:\n{proc.stderr}")
    return proc


def without_warnings(stderr: str) -> str:
    """stderr without Nix's `warning:` lines (e.g. the --add-root one)."""
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("warning:")).strip()


def nix_instantiate_all(expr_or_file: str | os.PathLike[str], *args: str,
                        cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> list[str]:
    """The drvPaths `nix-instantiate` prints (one per derivation, `!out` suffixes kept)."""
    proc = run(["nix-instantiate", *_source_args(expr_or_file), *args], cwd=cwd, env=env)
    return proc.stdout.split()


def nix_instantiate(expr_or_file: str | os.PathLike[str], *args: str,
                    cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> str:
    """The one drvPath that `nix-instantiate EXPR_OR_FILE ARGS...` prints.

    A `pathlib.Path` (any path-like) is a file or directory; a `str` is an expression (-E).
    """
    paths = nix_instantiate_all(expr_or_file, *args, cwd=cwd, env=env)
    assert len(paths) == 1, f"nix-instantiate printed {paths}, expected one drvPath"
    return paths[0]


def nix_eval_json(expr_or_file: str | os.PathLike[str], *args: str,
                  cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Any:
    """`nix-instantiate --eval --strict --json`, parsed."""
    proc = run(["nix-instantiate", "--eval", "--strict", "--json", *_source_args(expr_or_file), *args],
               cwd=cwd, env=env)
    return json.loads(proc.stdout)


def nix_eval_error(expr_or_file: str | os.PathLike[str], *args: str,
                   cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> str:
    """The error text (stderr without warnings) of a `nix-instantiate --eval` that must fail."""
    proc = run(["nix-instantiate", "--eval", *_source_args(expr_or_file), *args], cwd=cwd, env=env, check=False)
    assert proc.returncode != 0, f"nix-instantiate --eval {expr_or_file!r} succeeded: {proc.stdout}"
    return without_warnings(proc.stderr)


def error_lines(stderr: str) -> list[str]:
    """The lines of a Nix error text that state an error ("error: ..."), stripped."""
    out = []
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("error:") and line != "error:":
            out.append(line)
    return out


def nix_cli(*args: str, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> str:
    """stdout of `nix --extra-experimental-features 'nix-command flakes' ARGS...`."""
    return run(["nix", *FLAKE_FEATURES, *args], cwd=cwd, env=env).stdout


def nix_eval_raw(installable: str, *args: str, cwd: str | os.PathLike[str] | None = None) -> str:
    """`nix eval --raw INSTALLABLE ARGS...` (e.g. `path:/abs#x.drvPath`)."""
    return nix_cli("eval", "--raw", installable, *args, cwd=cwd)


def nix_flake_lock(flake_dir: str | os.PathLike[str]) -> str:
    """Runs `nix flake lock` in `flake_dir` and returns the flake.lock it wrote."""
    nix_cli("flake", "lock", cwd=flake_dir)
    return (Path(flake_dir) / "flake.lock").read_text()


async def nix_instantiate_async(expr_or_file: str | os.PathLike[str], *args: str,
                                cwd: str | os.PathLike[str] | None = None) -> str:
    """`nix_instantiate` for trio tests: the CLI runs while the event loop keeps going."""
    proc = await trio.run_process(["nix-instantiate", *_source_args(expr_or_file), *args], cwd=cwd,
                                  capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    paths = proc.stdout.decode().split()
    assert len(paths) == 1, paths
    return paths[0]


def derivation_nix(name: str, **attrs: str) -> str:
    """Nix source of a minimal derivation (builder /bin/sh) with extra attributes given as Nix source."""
    extra = "".join(f" {k} = {v};" for k, v in attrs.items())
    return f'derivation {{ name = "{name}"; system = "x86_64-linux"; builder = "/bin/sh";{extra} }}'
