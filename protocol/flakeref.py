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
    """Makes a local reference absolute ("path:./x" -> "path:/abs/x"); others unchanged. A bare
    path ("." or "/abs/dir") means what it means to Nix's CLI: `git+file://ROOT?dir=SUB` when
    it lies in a Git repository (ROOT the directory holding `.git`), else the directory."""
    base, sep, fragment = ref.partition("#")
    if base.startswith("path:") and not base.startswith("path:/"):
        base = "path:" + os.path.abspath(os.path.join(cwd, base[5:]))
    elif not _SCHEME.match(base) and (base.startswith((".", "/")) or os.path.isdir(os.path.join(cwd, base))):
        path, qmark, query = base.partition("?")
        base = _git_or_path(os.path.abspath(os.path.join(cwd, path)), query)
    return base + sep + fragment


def _git_or_path(path: str, query: str) -> str:
    """Nix's parsePathFlakeRefWithFragment for a local directory: the enclosing Git repository
    if there is one (with `dir` the flake's place in it, `shallow=1` for a shallow clone)."""
    root, sub = path, ""
    while root != "/":
        if os.path.exists(os.path.join(root, ".git")):
            params = [query] if query else []
            if sub:
                params.append(f"dir={sub}")
            if os.path.exists(os.path.join(root, ".git", "shallow")):
                params.append("shallow=1")
            return f"git+file://{root}" + ("?" + "&".join(params) if params else "")
        sub = os.path.basename(root) + ("/" + sub if sub else "")
        root = os.path.dirname(root)
    return path + ("?" + query if query else "")


def local_flake_dir(ref: str) -> Path | None:
    """The directory of a local flake reference (without fragment), or None for a remote one."""
    from pathlib import Path  # not at import: `evix query` starts faster without it

    for prefix in ("path:", "git+file://", "git+file:", ""):
        if ref.startswith(prefix):
            rest = ref[len(prefix):].split("?", 1)[0]
            if rest.startswith("/"):
                return Path(rest)
    return None
