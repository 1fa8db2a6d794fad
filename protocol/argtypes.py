"""Command-line value types shared by `evix` and `evixd`: numbers with a lower bound,
rejected by argparse with a clear message instead of failing later."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(convert: Callable[[str], float], minimum: float, *, strict: bool = False, unit: str = "") -> Callable[[str], float]:
    """An argparse `type=` that converts with `convert` and requires `>= minimum` (`> minimum` if strict)."""
    what = f"a number{' of ' + unit if unit else ''}"

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'more than' if strict else 'at least'} {minimum:g}: {text}")
        return value

    return parse


count = bounded(int, 0)
positive_count = bounded(int, 1)
seconds = bounded(float, 0, unit="seconds")
positive_seconds = bounded(float, 0, strict=True, unit="seconds")
