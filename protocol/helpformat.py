"""The `--help` layout every evix command shares: descriptions and epilogs kept as written
(they hold tables, examples and exit statuses), and every option's default said once.

Standard library only: `evix`, `evix-eval-jobs` and `evixd` all format their help with it.
"""

from __future__ import annotations

import argparse

# Defaults that say nothing: none, a counter at zero, a list that starts empty.
_SILENT_DEFAULTS = (None, 0, [], (), argparse.SUPPRESS)  # bools: see _says_nothing


class ManPageFormatter(argparse.RawDescriptionHelpFormatter):
    """RawDescriptionHelpFormatter that appends "(default X)" to an option's help unless the
    help already names its default or the default is one that says nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text or _says_nothing(action.default):
            return action.help
        return f"{text} (default {_shown(action.default)})"


def _says_nothing(default: object) -> bool:
    """True for a default not worth saying: none, an on/off flag, zero, an empty list."""
    return isinstance(default, bool) or any(default is d or (type(default) is type(d) and default == d) for d in _SILENT_DEFAULTS)


def _shown(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)
