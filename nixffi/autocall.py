"""Nix's autoCallFunction (what nix-instantiate and nix-eval-jobs do to a function value)
through the C API, which has no such call: the rules below, with Nix's own error text.

A function with formals gets the --arg/--argstr values it names, or all of them when it has
`...`; a formal with neither a default nor a value is Nix's MissingArgumentError; a plain
`x: ...` lambda and builtins are left uncalled; a `__functor` set is called through its
functor and the result auto-called in turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._native import lib
from .errors import NixError
from .value import Value, ValueType

if TYPE_CHECKING:
    from .state import EvalState

# Nix itself follows `{ __functor = self: self; }` forever; we stop.
MAX_FUNCTOR_CALLS = 1000


def auto_call(state: EvalState, value: Value, auto_args: Value) -> Value:
    """`value` auto-called with the attribute set `auto_args`; NixError as Nix would raise."""
    for _ in range(MAX_FUNCTOR_CALLS):
        t = value.type
        if t == ValueType.ATTRS and value.has("__functor"):
            value = value.get("__functor").call(value)
            continue
        if t != ValueType.FUNCTION:
            return value
        plan = state.helper(_CALL_PLAN).call(auto_args, value)
        if plan.has("missing"):
            raise missing_argument_error(plan.get("missing").as_str(), plan.get("position").to_python())
        return value.call(plan.get("args")) if plan.has("args") else value
    raise NixError(f"error: __functor returned a set with __functor {MAX_FUNCTOR_CALLS} times in a row",
                   error_type="nix::EvalError", code=lib.NIX_ERR_NIX_ERROR)


def missing_argument_error(name: str, position: dict[str, Any] | None) -> NixError:
    """The error autoCallFunction raises for a formal without a default or a value, as Nix
    prints it: its words, then the formal's position and source lines (when in a file)."""
    info = _MISSING_ARGUMENT.format(name=name)
    message = "error: " + info.replace("\n", "\n" + _INDENT)
    if position:
        message += f"\n{_INDENT}at {position['file']}:{position['line']}:{position['column']}:"
        message += code_frame(str(position["file"]), int(position["line"]), int(position["column"]))
    return NixError(message, info=info, error_type="nix::MissingArgumentError", code=lib.NIX_ERR_NIX_ERROR)


def code_frame(file: str, line: int, column: int) -> str:
    """The lines Nix prints below an error position: the line before, the line with a caret
    under the column, the line after ("" when the file cannot be read)."""
    try:
        with open(file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    if not 1 <= line <= len(lines):
        return ""
    out = []
    for number in range(max(line - 1, 1), min(line + 1, len(lines)) + 1):
        out.append(f"\n{_INDENT} {number:5d}| {lines[number - 1]}")
        if number == line and column > 0:
            out.append(f"\n{_INDENT}      |{' ' * column}^")
    return "".join(out)


_INDENT = " " * 7  # Nix's indentation of an error's continuation lines

_MISSING_ARGUMENT = """\
cannot evaluate a function that has an argument without a value ('{name}')
Nix attempted to evaluate a function as a top level expression; in
this case it must have its arguments supplied either by default
values, or passed explicitly with '--arg' or '--argstr'. See
https://nixos.org/manual/nix/stable/language/constructs.html#functions."""

# What autoCallFunction does with one function, as data: {} (leave it uncalled: `x: ...` or
# a builtin), { args } (call it with these), { missing, position } (a formal has neither a
# default nor a value). The caller makes the call itself, so a Nix error in it carries no
# frame of ours. Nix's language cannot tell `{ }:` from `x:` or see `...` through
# functionArgs, but `builtins.toXML` prints a function's pattern (<varpat> or
# <attrspat ellipsis="1">), and only the pattern, not the body; functionArgs keeps each
# formal's position. Of several missing formals Nix names the first in its symbol order
# (roughly: first seen by the parser), we the first by name.
_CALL_PLAN = """
autoArgs: g:
  let
    pattern = builtins.toXML g;
    has = needle: builtins.length (builtins.split needle pattern) > 1;
    formals = builtins.functionArgs g;
    missing = builtins.filter (n: !formals.${n} && !(autoArgs ? ${n})) (builtins.attrNames formals);
  in
  if !(has "<attrspat") then { }
  else if has "<attrspat[^>]*ellipsis=.1." then { args = autoArgs; }
  else if missing != [ ] then
    { missing = builtins.head missing; position = builtins.unsafeGetAttrPos (builtins.head missing) formals; }
  else { args = builtins.intersectAttrs formals autoArgs; }
"""
