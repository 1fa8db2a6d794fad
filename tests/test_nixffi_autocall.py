"""Auto-calling with --arg/--argstr follows nix-instantiate for every kind of function."""

from __future__ import annotations

import json
import subprocess

import pytest

CASES = [
    "{ a, ... }@args: args",  # `...`: every argument is passed
    "{ a, b ? 2 }: { inherit a b; }",  # only the named ones
    "{ }: 5",
    "x: 7",  # a plain lambda is not called
    "{ __functor = self: { a, ... }@r: r; }",
    "{ plain = 1; }",
]


@pytest.mark.parametrize("expr", CASES)
def test_auto_call_matches_nix_instantiate(nix_state, expr):
    import nixffi

    args = [nixffi.AutoArg("a", "1"), nixffi.AutoArg("extra", "x", True)]
    value = nix_state.auto_call(nix_state.eval_string(expr), args)
    cli = subprocess.run(
        ["nix-instantiate",  # conftest put the tested Nix first on PATH
         "--eval", "--strict", "--json", "-E", expr, "--arg", "a", "1", "--argstr", "extra", "x"],
        capture_output=True, text=True,
    )
    if value.type == nixffi.ValueType.FUNCTION:
        assert "cannot convert a function to JSON" in cli.stderr  # Nix left it uncalled too
    else:
        assert cli.returncode == 0, cli.stderr
        assert value.to_python() == json.loads(cli.stdout)


def test_the_traversal_sees_every_callable_as_a_function(nix_state):
    """classify_child: lambdas, builtins and `__functor` sets (even a derivation with one,
    which Nix's autoCallFunction calls first) are FUNCTION; other values keep their kind."""
    from nixffi.traverse import Kind, classify_child

    parent = nix_state.eval_string("""{
      lambda = x: x; formals = { a ? 1 }: a; builtin = builtins.map;
      functor = { __functor = self: x: x; };
      functorDrv = { type = "derivation"; __functor = self: x: x; };
      drv = { type = "derivation"; }; plain = { a = 1; }; number = 1;
    }""")
    kinds = {name: classify_child(parent, name.encode(), False)[0] for name in parent.names()}
    assert kinds == {"lambda": Kind.FUNCTION, "formals": Kind.FUNCTION, "builtin": Kind.FUNCTION,
                     "functor": Kind.FUNCTION, "functorDrv": Kind.FUNCTION, "drv": Kind.DERIVATION,
                     "plain": Kind.ATTRS, "number": Kind.SKIP}
