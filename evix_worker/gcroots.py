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


def _auto_dir() -> str:
    return os.path.join(_state_dir(), "gcroots", "auto")


def prepare(roots_dir: str) -> None:
    """Creates `roots_dir` and Nix's indirect-roots directory once, before any derivation
    is rooted; OSError (e.g. permission denied) says the option cannot work here."""
    os.makedirs(roots_dir, exist_ok=True)
    os.makedirs(_auto_dir(), exist_ok=True)


def add_root(roots_dir: str, store_path: str) -> str:
    """Roots `store_path` under `roots_dir` (see `prepare`) and registers the root with Nix; returns the link."""
    link = os.path.join(roots_dir, os.path.basename(store_path))
    if os.path.islink(link) and os.readlink(link) == store_path:
        return link
    _replace_symlink(store_path, link)
    _replace_symlink(link, os.path.join(_auto_dir(), hashlib.sha1(link.encode()).hexdigest()))
    return link
