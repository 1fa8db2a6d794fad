"""Where the traversal stops on its own, so that no input makes it endless.

A set that is one of its own ancestors (`let s = { recurseForDerivations = true; inherit s; }`)
would be expanded forever; it is recognised by value identity (see `nixffi.Value.is_same`).
What identity cannot see, a function or a `//` making a fresh set at every level, is cut by
the depth limit (`--max-depth`). Either way the set gets one error event instead of being
expanded, and its siblings go on as usual.
"""

from __future__ import annotations

from collections.abc import Mapping

import nixffi
from protocol.events import format_attr


def cut_reason(sets: Mapping[tuple[str, ...], nixffi.Value], path: tuple[str, ...], value: nixffi.Value,
               max_depth: int) -> str | None:
    """Why the set `value` at `path` must not be expanded (its error message), or None.

    `sets` holds the sets already expanded on the way to `path` (every proper prefix of it).
    """
    for depth in range(len(path)):
        ancestor = sets.get(path[:depth])
        if ancestor is not None and value.is_same(ancestor):
            return f"attribute set cycle: {format_attr(path)} is {format_attr(path[:depth]) or 'the root'}"
    if len(path) >= max_depth:
        return (f"attribute set not traversed: {format_attr(path)} is at the depth limit "
                f"(--max-depth {max_depth}); its attributes would be deeper")
    return None
