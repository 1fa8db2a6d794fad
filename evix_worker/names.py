"""Bytes that JSON cannot carry: attribute names (and other strings) that are not UTF-8.

Nix names and strings are bytes; every line evix prints is UTF-8 JSON. So every byte that
is not part of valid UTF-8 is shown as `\\xNN` (backslash, `x`, two lowercase hex digits),
as Python's "backslashreplace" writes it; valid text is left as it is. An attribute whose
name needs this is never evaluated (the escaped name would not find it): it gets an error
event of its own, and its siblings are evaluated as usual.
"""

from __future__ import annotations

import codecs

import orjson

INVALID_NAME = ("attribute name is not valid UTF-8 (each byte that is not UTF-8 is shown as \\xNN); "
                "the attribute was not evaluated")


def shown(raw: bytes) -> str:
    """How a name (or string) that may not be UTF-8 appears in events."""
    return raw.decode("utf-8", "backslashreplace")


def is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def split_names(raw_names: list[bytes]) -> tuple[bytes, list[str], list[str]]:
    """For the names of a set, sorted bytewise: the JSON array the attrset event lists (every
    name, escaped where needed), the valid names, and the escaped invalid ones."""
    listed, valid, invalid = [], [], []
    for raw in raw_names:
        name = shown(raw)
        listed.append(name)
        (valid if is_utf8(raw) else invalid).append(name)
    return orjson.dumps(listed), valid, invalid


def _escape_in_json(error: UnicodeError) -> tuple[str, int]:
    """A codec error handler: inside a JSON string, an invalid byte becomes the JSON text
    of `\\xNN` (its backslash escaped), so the line stays valid JSON and says the same."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start:error.end]
    return "".join(f"\\\\x{b:02x}" for b in bad), error.end


codecs.register_error("evix-json-bytes", _escape_in_json)


def utf8_json(lines: bytes) -> bytes:
    """JSON lines with every byte that is not UTF-8 escaped as above. The JSON around
    strings is ASCII, so such bytes can only be inside strings (a system, an output name)."""
    if is_utf8(lines):
        return lines
    return lines.decode("utf-8", "evix-json-bytes").encode()
