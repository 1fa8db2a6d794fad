"""The Value API: types, scalars, strings with context, paths, attribute sets, lists, calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nixffi
from nixffi import ValueType
from nix_helpers import derivation_nix, nix_instantiate_all, write_nix


@pytest.mark.parametrize(
    "expr,vtype",
    [
        ("true", ValueType.BOOL),
        ("1 + 1", ValueType.INT),
        ("0.5 * 3", ValueType.FLOAT),
        ("null", ValueType.NULL),
        ('"s" + "t"', ValueType.STRING),
        ("/etc", ValueType.PATH),
        ("{ a = 1; }", ValueType.ATTRS),
        ("[ 1 ]", ValueType.LIST),
        ("x: x", ValueType.FUNCTION),
        ("builtins.add", ValueType.FUNCTION),
    ],
)
def test_types_agree_with_type_of(nix_state: nixffi.EvalState, nix_eval_json: Any, expr: str, vtype: ValueType) -> None:
    """`.type` forces the thunk and names the same type as `builtins.typeOf` in the CLI."""
    v = nix_state.eval_string(f"let f = _: {expr}; in f null")  # a thunk until forced
    assert v.type == vtype
    type_of = {"bool": ValueType.BOOL, "int": ValueType.INT, "float": ValueType.FLOAT, "null": ValueType.NULL,
               "string": ValueType.STRING, "path": ValueType.PATH, "set": ValueType.ATTRS, "list": ValueType.LIST,
               "lambda": ValueType.FUNCTION}
    assert type_of[nix_eval_json(f"builtins.typeOf ({expr})")] == vtype


def test_scalars(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    ev = nix_state.eval_string
    assert ev("1 == 1").as_bool() is True
    assert ev("1 == 2").as_bool() is False
    big = "9223372036854775807"
    assert ev(big).as_int() == nix_eval_json(big) == 2**63 - 1
    assert ev("-9223372036854775807 - 1").as_int() == -(2**63)
    assert ev("1.0 / 3").as_float() == nix_eval_json("1.0 / 3")
    assert ev("null").is_null() and not ev("0").is_null()
    text = 'unicode: \u00e9\u4e2d \U0001f600, quotes " and \\\\ backslash'
    assert ev(json.dumps(text, ensure_ascii=False).replace("$", "\\$")).as_str() == text
    assert ev('""').as_str() == ""
    assert ev('"a" + "b"').string_context() == {}


def test_path_value(nix_state: nixffi.EvalState, tmp_path: Path) -> None:
    write_nix(tmp_path, "f.nix", "1")
    v = nix_state.eval_string("./f.nix", base_dir=tmp_path)
    assert v.type == ValueType.PATH
    assert v.as_path() == str(tmp_path / "f.nix")
    assert v.to_python() == str(tmp_path / "f.nix")
    made = nix_state.path(str(tmp_path / "f.nix"))
    assert made.as_path() == str(tmp_path / "f.nix")
    assert nix_state.builtin("import").call(made).as_int() == 1
    # a path in a string is copied to the store, with context, as in the CLI
    s = nix_state.eval_string('"${./f.nix}"', base_dir=tmp_path)
    store_path = s.as_str()
    assert store_path.startswith("/nix/store/") and store_path.endswith("-f.nix")
    assert s.string_context() == {store_path: {"path": True}}


def test_string_with_derivation_context(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    drv = derivation_nix("evix-test-ctx", outputs='[ "out" "doc" ]')
    s = nix_state.eval_string(f'let d = {drv}; in "${{d.doc}}/share and ${{d}}"')
    d = nix_state.eval_string(drv)
    drv_path = d.get("drvPath").as_str()
    assert s.as_str() == f'{d.get("doc").get("outPath").as_str()}/share and {d.get("outPath").as_str()}'
    assert s.string_context() == {drv_path: {"outputs": ["doc", "out"]}}
    assert s.string_context() == nix_eval_json(f'let d = {drv}; in builtins.getContext "${{d.doc}}/share and ${{d}}"')


def test_attribute_names_sorted_bytewise(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    """names() is sorted by bytes whatever the order Nix interned the symbols in; as attrNames."""
    names = ["zeta", "Zeta", "alpha", "_under", "a1", "a10", "a2", "\u00e9t\u00e9", "A", "a-b", "a'b", "z" * 40, "0lead"]
    body = " ".join(f'{json.dumps(n, ensure_ascii=False)} = {i};' for i, n in enumerate(names))
    expr = f"{{ {body} }}"
    v = nix_state.eval_string(expr)
    got = v.names()
    assert got == sorted(names, key=lambda n: n.encode())
    assert got == nix_eval_json(f"builtins.attrNames ({expr})")
    assert got != names
    assert len(v) == len(names)
    assert [n for n, _ in v.items()] == got
    assert {n: x.as_int() for n, x in v.items()} == {n: i for i, n in enumerate(names)}
    assert v.to_python() == nix_eval_json(expr)


def test_derivations_listed_in_name_order(nix_state: nixffi.EvalState, tmp_path: Path) -> None:
    """Iterating names() visits derivations in the order nix-instantiate prints them."""
    f = write_nix(tmp_path, "set.nix", "{ " + " ".join(
        f"{n} = {derivation_nix('evix-test-order-' + n)};" for n in ["m", "B", "a", "Z", "b2", "b10"]) + " }")
    v = nix_state.eval_file(f)
    assert [v.get(n).get("drvPath").as_str() for n in v.names()] == nix_instantiate_all(f)


def test_lists(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    expr = 'builtins.genList (i: i * i) 10 ++ [ "s" null true 1.5 { a = [ 1 ]; } ]'
    v = nix_state.eval_string(expr)
    assert v.type == ValueType.LIST
    assert len(v) == 15
    assert [x.as_int() for x in list(v)[:10]] == [i * i for i in range(10)]
    assert v[10].as_str() == "s" and v[11].is_null() and v[12].as_bool() and v[13].as_float() == 1.5
    assert v[14]["a"][0].as_int() == 1
    assert v.to_python() == nix_eval_json(expr)
    assert len(nix_state.eval_string("[ ]")) == 0
    with pytest.raises(TypeError):
        iter(nix_state.eval_string("{ }"))


def test_to_python_nested(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    expr = '{ a.b.c = [ 1 2 { d = "e"; } ]; f = 2.5; g = null; h = true; i = -3; }'
    assert nix_state.eval_string(expr).to_python() == nix_eval_json(expr)
    v = nix_state.eval_string("{ f = x: x; n = 1; }")
    assert v.to_python() == {"f": None, "n": 1}
    assert v.to_python(lenient=True) == {"n": 1}


def test_force_deep(nix_state: nixffi.EvalState) -> None:
    v = nix_state.eval_string('{ a = [ (throw "evix test: deep") ]; }')
    v.force()  # weak head normal form only: fine
    with pytest.raises(nixffi.NixError) as e:
        v.force_deep()
    assert "evix test: deep" in e.value.message
    ok = nix_state.eval_string("{ a = [ (1 + 1) ]; }")
    assert ok.force_deep() is ok


def test_call_one_and_several_arguments(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    inc = nix_state.eval_string("x: x + 1")
    assert inc.call(nix_state.int(41)).as_int() == 42
    f = nix_state.eval_string("a: b: c: a * 100 + b * 10 + c")
    assert f.call(nix_state.int(1), nix_state.int(2), nix_state.int(3)).as_int() == 123
    assert f.call(nix_state.int(1)).call(nix_state.int(2)).call(nix_state.int(3)).as_int() == 123
    partial = f.call(nix_state.int(4), nix_state.int(5))
    assert partial.type == ValueType.FUNCTION
    assert partial.call(nix_state.int(6)).as_int() == 456
    add = nix_state.builtin("add")
    assert add.call(nix_state.int(2), nix_state.int(3)).as_int() == 5
    concat = nix_state.builtin("concatStringsSep")
    assert concat.call(nix_state.string("-"), nix_state.eval_string('[ "a" "b" ]')).as_str() == "a-b"
    formals = nix_state.eval_string("{ a, b ? 2 }: a * b")
    assert formals.call(nix_state.attrs({"a": nix_state.int(21)})).as_int() == 42
    assert nix_eval_json("({ a, b ? 2 }: a * b) { a = 21; }") == 42


def test_made_values_round_trip(nix_state: nixffi.EvalState, nix_eval_json: Any) -> None:
    """Values made from Python are real Nix values: toJSON of them is what the CLI gives."""
    s = nix_state
    made = s.attrs({
        "str": s.string("h\u00e9llo \"q\""), "int": s.int(-7), "t": s.bool(True), "f": s.bool(False),
        "nul": s.null(), "nested": s.attrs({"x": s.int(1)}), "list": s.eval_string("[ 1 2 ]"),
    })
    assert made.names() == sorted(["str", "int", "t", "f", "nul", "nested", "list"])
    to_json = s.builtin("toJSON").call(made).as_str()
    expected_expr = '{ str = "h\u00e9llo \\"q\\""; int = -7; t = true; f = false; nul = null; nested.x = 1; list = [ 1 2 ]; }'
    assert json.loads(to_json) == nix_eval_json(expected_expr)
    assert made.to_python() == nix_eval_json(expected_expr)
    assert s.builtin("typeOf").call(s.null()).as_str() == nix_eval_json("builtins.typeOf null")
    assert s.builtin("typeOf").call(s.attrs({})).as_str() == nix_eval_json("builtins.typeOf { }")


def test_many_values_stay_valid(nix_state: nixffi.EvalState) -> None:
    """Values kept by Python survive Nix garbage collections (each holds a reference)."""
    kept = [nix_state.eval_string(f'{{ n = {i}; s = "v{i}"; }}') for i in range(2000)]
    nixffi._native.lib.nix_gc_now()
    garbage = nix_state.eval_string("builtins.genList (i: { x = toString i; }) 50000").force_deep()
    del garbage
    nixffi._native.lib.nix_gc_now()
    assert all(v.get("n").as_int() == i and v.get("s").as_str() == f"v{i}" for i, v in enumerate(kept))


def test_has_function() -> None:
    assert nixffi.has_function("nix_value_call")
    assert nixffi.has_function("nix_expr_eval_from_string")
    assert not nixffi.has_function("nix_evix_made_up_function")


def test_is_same_is_value_identity(nix_state: nixffi.EvalState) -> None:
    """What the traversal's cycle check relies on: the C API hands out the value an attribute
    is stored in, and `inherit` stores the inherited value itself; a copy is another value."""
    root = nix_state.eval_string("let s = { inherit s; t = s.s; u = { }; }; in { inherit s; }")
    s = root.get("s")
    assert s.is_same(s.get("s")) and s.get("s").is_same(s.get("s").get("s"))
    assert not s.is_same(s.get("t"))  # a thunk of its own, though equal once forced
    assert not s.is_same(root) and not s.get("u").is_same(s)
