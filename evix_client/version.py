"""`evix --version`: evix's own version and the Nix whose C API it is linked against.

The Nix version comes from the library itself (`nix_version_get`), asked in a subprocess
(`python -m evix_worker.probe`) so that `evix` never loads Nix in its own process; when the
library cannot be loaded, that child's one-line reason is shown instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

PROBE_TIMEOUT = 30.0  # seconds; loading the Nix libraries takes well under one


def evix_version() -> str:
    """The installed distribution's version; "unknown" when running from a tree pip never saw."""
    from importlib import metadata  # only here: it costs evix's start-up a few milliseconds

    try:
        return metadata.version("evix")
    except metadata.PackageNotFoundError:
        return "unknown"


def linked_nix_version() -> tuple[str | None, str]:
    """(version, "") when nixffi loads, else (None, why it does not)."""
    import subprocess  # only when asked: `evix` itself starts without it
    try:
        out = subprocess.run([sys.executable, "-m", "evix_worker.probe"], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot run the Nix probe: {e}"
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip(), ""
    lines = out.stderr.strip().splitlines()
    return None, lines[-1] if lines else f"the Nix probe exited with status {out.returncode}"


def version_text() -> tuple[str, str, int]:
    """What `--version` prints on stdout and on stderr, and its exit status (1 when the Nix
    C API cannot be loaded: evix is installed but cannot evaluate)."""
    nix, why = linked_nix_version()
    if nix is None:
        return f"evix {evix_version()}\n", f"evix: error: the Nix C API cannot be loaded: {why}\n", 1
    return f"evix {evix_version()}\nNix {nix} (C API)\n", "", 0


class VersionAction(argparse.Action):
    """`--version`: prints version_text() and exits, before argparse asks for a command."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        out, err, code = version_text()
        sys.stdout.write(out)
        sys.stderr.write(err)
        parser.exit(code)
