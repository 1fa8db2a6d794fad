"""Reading an EvalConfig's fields from JSON, where every wrong shape is named in words.

A daemon client sends the config as JSON; whatever it sends, the answer names the field
(`args[1].value`, `options[0]`) and says what was expected ("an array of [key, value]
pairs of strings"), never a Python type or exception text.
"""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """A config field has the wrong shape; `field` is its JSON path (`args[0].name`)."""

    def __init__(self, field: str, expected: str, value: Any, got: str | None = None) -> None:
        """`value` is what was found (`got` says what it is, when JSON's kind is not enough)."""
        super().__init__(f"{field} must be {expected}, not {got or json_kind(value)}")
        self.field = field


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(field, "a string", value)
    return value


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(field, "true or false", value)
    return value


def integer(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(field, "an integer", value)
    return value


def number(field: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FieldError(field, "a number", value)
    return float(value)


def strings(field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FieldError(field, "an array of strings", value)
    return tuple(string(f"{field}[{i}]", x) for i, x in enumerate(value))


def pairs(field: str, value: Any, what: str) -> tuple[tuple[str, str], ...]:
    """An array of two-string arrays; `what` names the two (`key, value`)."""
    expected = f"an array of [{what}] pairs of strings"
    if not isinstance(value, list):
        raise FieldError(field, expected, value)
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            got = f"an array of {len(pair)}" if isinstance(pair, list) else None
            raise FieldError(f"{field}[{i}]", f"a [{what}] pair of strings", pair, got)
        out.append((string(f"{field}[{i}][0]", pair[0]), string(f"{field}[{i}][1]", pair[1])))
    return tuple(out)


ARG_FIELDS = ("name", "value", "isString")


def args(field: str, value: Any) -> list[tuple[str, str, bool]]:
    """`args`: an array of {name, value, isString} objects, as (name, value, is_string)."""
    if not isinstance(value, list):
        raise FieldError(field, "an array of {name, value, isString} objects", value)
    out = []
    for i, a in enumerate(value):
        at = f"{field}[{i}]"
        if not isinstance(a, dict):
            raise FieldError(at, "an object with name, value and isString", a)
        unknown = sorted(set(a) - set(ARG_FIELDS))
        if unknown:
            raise FieldError(f"{at}.{unknown[0]}", "absent (an argument has only name, value and isString)", a[unknown[0]])
        out.append((string(f"{at}.name", a.get("name")), string(f"{at}.value", a.get("value")),
                    boolean(f"{at}.isString", a.get("isString", False))))
    return out
