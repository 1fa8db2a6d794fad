"""Flake reference strings: fragment splitting and making local references absolute."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def split_flake_ref(ref: str) -> tuple[str, str]:
    """Splits "REF#a.b" into ("REF", "a.b"); the fragment is "" when absent."""
    base, _, fragment = ref.partition("#")
    return base, fragment


def absolute_flake_ref(ref: str, cwd: str) -> str:
    """Makes a local reference absolute ("." -> "/abs/dir", "path:./x" -> "path:/abs/x"); others unchanged."""
    base, sep, fragment = ref.partition("#")
    if base.startswith("path:") and not base.startswith("path:/"):
        base = "path:" + os.path.abspath(os.path.join(cwd, base[5:]))
    elif not _SCHEME.match(base) and (base.startswith((".", "/")) or os.path.isdir(os.path.join(cwd, base))):
        base = os.path.abspath(os.path.join(cwd, base))
    return base + sep + fragment


def local_flake_dir(ref: str) -> Path | None:
    """The directory of a local flake reference (without fragment), or None for a remote one."""
    from pathlib import Path  # not at import: `evix query` starts faster without it

    for prefix in ("path:", "git+file://", "git+file:", ""):
        if ref.startswith(prefix):
            rest = ref[len(prefix):].split("?", 1)[0]
            if rest.startswith("/"):
                return Path(rest)
    return None
