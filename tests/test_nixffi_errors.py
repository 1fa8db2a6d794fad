"""Nix errors reach Python as NixError with Nix's own message, as `nix-instantiate --eval` prints it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nixffi
from nix_helpers import derivation_nix, error_lines

# (id, expression, Nix's C++ error type, words of Nix's own message)
ERRORS = [
    ("throw", 'throw "evix test: thrown on purpose"', "nix::ThrownError", "evix test: thrown on purpose"),
    ("assert", "let ok = false; in assert ok; 1", "nix::AssertionError", "assertion 'ok' failed"),
    ("assert-eq", "assert 1 == 2; 3", "nix::AssertionError", "assertion"),
    ("abort", 'abort "evix test abort"', "nix::Abort",
     "evaluation aborted with the following error message: 'evix test abort'"),
    ("infinite-recursion", "let x = x; in x", "nix::InfiniteRecursionError", "infinite recursion encountered"),
    ("type-error", "if 1 then 2 else 3", "nix::TypeError", "expected a Boolean but found an integer"),
    ("type-error-call", "1 2", "nix::TypeError", "attempt to call something which is not a function"),
    ("missing-attribute", "{ a = 1; }.x", "nix::EvalError", "attribute 'x' missing"),
    ("syntax-error", "{ a = ", "nix::ParseError", "syntax error, unexpected end of file"),
    ("syntax-error-token", "let in in", "nix::ParseError", "syntax error, unexpected"),
    ("undefined-variable", "evixNoSuchVariable + 1", "nix::UndefinedVarError", "undefined variable 'evixNoSuchVariable'"),
    ("missing-function-argument", "({ a }: a) { }", "nix::TypeError", "called without required argument 'a'"),
    ("in-derivation", "(" + derivation_nix("evix-test-err", env='throw "evix test: inside a derivation"') + ").drvPath",
     "nix::ThrownError", "evix test: inside a derivation"),
]


@pytest.mark.parametrize("expr,error_type,words", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_has_nix_message(nix_state: nixffi.EvalState, nix_eval_error: Any, tmp_path: Path,
                               expr: str, error_type: str, words: str) -> None:
    with pytest.raises(nixffi.NixError) as caught:
        nix_state.eval_string(expr, base_dir=tmp_path).force()
    e = caught.value
    assert words in e.message
    assert e.error_type == error_type
    assert e.code == -4  # NIX_ERR_NIX_ERROR
    assert e.info and e.info in e.message
    assert str(e) == e.message
    assert "\x1b[" not in e.message, "ANSI colours must be stripped"
    # The same words nix-instantiate prints for the same expression: every "error: ..." line
    # of its stderr is in our message, and in fact the whole text is the same.
    cli = nix_eval_error(expr, cwd=tmp_path)
    assert words in cli
    lines = error_lines(cli)
    assert lines
    for line in lines:
        assert line in e.message
    assert e.message.strip() == cli.strip()


def test_state_usable_after_errors(nix_state: nixffi.EvalState) -> None:
    for expr, *_ in [e[1:] for e in ERRORS]:
        with pytest.raises(nixffi.NixError):
            nix_state.eval_string(expr).force()
    assert nix_state.eval_string("20 + 22").as_int() == 42


def test_lazy_error_raised_when_forced(nix_state: nixffi.EvalState, nix_eval_error: Any) -> None:
    """An error inside a lazy attribute or list element is raised by the access that forces it."""
    v = nix_state.eval_string('{ ok = 1; bad = throw "evix test: lazy"; list = [ 1 (abort "evix test: in list") ]; }')
    assert v.names() == ["bad", "list", "ok"]  # the set itself evaluates
    assert v.get("ok").as_int() == 1
    with pytest.raises(nixffi.NixError) as e:
        v.get("bad").force()  # the 2.26 C API forces an attribute when getting it
    assert e.value.error_type == "nix::ThrownError"
    assert error_lines(nix_eval_error('throw "evix test: lazy"'))[-1] in e.value.message
    lst = v.get("list")
    assert len(lst) == 2
    assert lst[0].as_int() == 1
    with pytest.raises(nixffi.NixError) as e:
        lst[1].as_int()
    assert e.value.error_type == "nix::Abort"
    assert "evix test: in list" in e.value.message
    with pytest.raises(nixffi.NixError) as e:
        v.to_python()
    assert e.value.error_type == "nix::ThrownError"  # names are visited in order: "bad" first
    with pytest.raises(nixffi.NixError):
        v.force_deep()
    assert v.to_python(lenient=True) == {"ok": 1, "list": [1]}


def test_missing_attribute_through_value_api(nix_state: nixffi.EvalState) -> None:
    v = nix_state.eval_string("{ a = 1; }")
    with pytest.raises(nixffi.NixError) as e:
        v.get("x")
    assert e.value.code == -3  # NIX_ERR_KEY
    assert "attribute 'x' missing" in e.value.message  # named, as Nix's own message does
    with pytest.raises(nixffi.NixError):
        v["x"]
    assert not v.has("x") and "x" not in v and "a" in v


def test_calling_non_function_raises(nix_state: nixffi.EvalState, nix_eval_error: Any) -> None:
    with pytest.raises(nixffi.NixError) as e:
        nix_state.eval_string("1").call(nix_state.int(2))
    assert e.value.error_type == "nix::TypeError"
    assert "attempt to call something which is not a function" in e.value.message
    assert "attempt to call something which is not a function" in nix_eval_error("1 2")


def test_wrong_accessor_raises(nix_state: nixffi.EvalState) -> None:
    with pytest.raises(nixffi.NixError):
        nix_state.eval_string('"a string"').as_int()
    with pytest.raises(IndexError):
        nix_state.eval_string("[ 1 ]")[1]
