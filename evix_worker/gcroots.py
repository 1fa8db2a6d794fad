"""GC roots for evaluated derivations, as `nix-store --add-root --indirect` makes them.

DIR/<drv file name> points at the .drv, and an indirect root in the state directory's
gcroots/auto points at DIR/<name>, so `nix-collect-garbage` keeps the derivation.
"""

from __future__ import annotations

import hashlib
import os


def _state_dir() -> str:
    return os.environ.get("NIX_STATE_DIR", "/nix/var/nix")


def _replace_symlink(target: str, link: str) -> None:
    tmp = f"{link}.tmp-{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)


def add_root(roots_dir: str, store_path: str) -> str:
    """Roots `store_path` under `roots_dir` and registers the root with Nix; returns the link."""
    link = os.path.join(roots_dir, os.path.basename(store_path))
    if os.path.islink(link) and os.readlink(link) == store_path:
        return link
    _replace_symlink(store_path, link)
    auto = os.path.join(_state_dir(), "gcroots", "auto")
    os.makedirs(auto, exist_ok=True)
    _replace_symlink(link, os.path.join(auto, hashlib.sha1(link.encode()).hexdigest()))
    return link
