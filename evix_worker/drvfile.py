"""What the worker reads from .drv files (the 2.26 C API cannot read a derivation); the
format itself is parsed in protocol.aterm, which the master uses too."""

from __future__ import annotations

from protocol.aterm import Derivation, DrvParseError, parse, read

__all__ = ["Derivation", "DrvParseError", "parse_input_drvs", "read"]


def parse_input_drvs(text: str) -> dict[str, list[str]]:
    """{input drvPath: [output names]} of a derivation's ATerm text."""
    return parse(text).input_drvs
