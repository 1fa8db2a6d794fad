"""A copy of the working tree as git would commit it, for tests that build or set up evix
from scratch without touching this checkout's .venv, build/ or nixffi/ artefacts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from evix_helpers import REPO


def source_copy(dest: Path) -> Path:
    """The files of the tree git would commit (tracked and new, not ignored), copied to `dest`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest
