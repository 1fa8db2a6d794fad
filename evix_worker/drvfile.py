"""Reads the input derivations of a .drv file (ATerm: `Derive([outputs],[inputDrvs],...)`).

The 2.26 C API cannot read a derivation, and the file is small, so we parse what we need.
"""

from __future__ import annotations


class DrvParseError(ValueError):
    """The file is not a derivation in a format we know."""


def _string(text: str, i: int) -> tuple[str, int]:
    if text[i] != '"':
        raise DrvParseError(f"expected a string at offset {i}")
    i += 1
    out = []
    while True:
        j = text.find('"', i)
        k = text.find("\\", i)
        if j < 0:
            raise DrvParseError("unterminated string")
        if 0 <= k < j:
            out.append(text[i:k])
            esc = text[k + 1]
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(esc, esc))
            i = k + 2
            continue
        out.append(text[i:j])
        return "".join(out), j + 1


def _string_list(text: str, i: int) -> tuple[list[str], int]:
    if text[i] != "[":
        raise DrvParseError(f"expected a list at offset {i}")
    i += 1
    items = []
    while text[i] != "]":
        s, i = _string(text, i)
        items.append(s)
        if text[i] == ",":
            i += 1
    return items, i + 1


def _skip_value(text: str, i: int) -> int:
    """Skips one ATerm value (string, list or tuple)."""
    if text[i] == '"':
        return _string(text, i)[1]
    close = {"[": "]", "(": ")"}.get(text[i])
    if close is None:
        raise DrvParseError(f"unexpected {text[i]!r} at offset {i}")
    i += 1
    while text[i] != close:
        i = _skip_value(text, i)
        if text[i] == ",":
            i += 1
    return i + 1


def parse_input_drvs(text: str) -> dict[str, list[str]]:
    """{input drvPath: [output names]} of a derivation's ATerm text."""
    if not text.startswith("Derive("):
        raise DrvParseError("not a derivation (expected 'Derive(')")
    i = _skip_value(text, len("Derive("))  # outputs
    if text[i] != ",":
        raise DrvParseError(f"expected ',' at offset {i}")
    i += 1
    if text[i] != "[":
        raise DrvParseError(f"expected the input derivations list at offset {i}")
    i += 1
    result: dict[str, list[str]] = {}
    while text[i] != "]":
        if text[i] != "(":
            raise DrvParseError(f"expected '(' at offset {i}")
        path, i = _string(text, i + 1)
        i += 1  # ','
        if text[i] == "[":
            outputs, i = _string_list(text, i)
        else:  # dynamic derivations: (outputs, [child map]); keep the outputs
            if text[i] != "(":
                raise DrvParseError(f"unexpected {text[i]!r} at offset {i}")
            outputs, j = _string_list(text, i + 1)
            i = _skip_value(text, i)
        result[path] = outputs
        i += 1  # ')'
        if text[i] == ",":
            i += 1
    return result


def read_input_drvs(drv_path: str) -> dict[str, list[str]]:
    with open(drv_path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_input_drvs(f.read())
