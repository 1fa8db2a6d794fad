"""nixffi evaluates derivations to the same drvPaths as `nix-instantiate` of the same Nix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

import nixffi
from nix_helpers import derivation_nix, nix_instantiate_all, nix_instantiate_async, run, write_nix

# Derivations that depend on each other: multiple outputs, outputs used by others, string
# context from a derivation, a store file and a path, a derivation depending on two others.
PKGS = """
let
  base = { system = "x86_64-linux"; builder = "/bin/sh"; };
  tool = derivation (base // {
    name = "evix-test-tool";
    outputs = [ "out" "dev" "lib" ];
    args = [ "-c" "echo tool" ];
  });
  script = builtins.toFile "evix-test-script.sh" "echo include";
  app = derivation (base // {
    name = "evix-test-app";
    args = [ "-c" "${tool}/bin/tool ${tool.lib}/lib ${script}" ];
    TOOL_DEV = tool.dev;
    src = ./src.txt;
  });
  bundle = derivation (base // {
    name = "evix-test-bundle";
    outputs = [ "bin" "out" ];
    args = [ "-c" "cp ${app} ${tool.dev}" ];
  });
in {
  inherit tool app bundle;
  zeta = derivation (base // { name = "evix-test-zeta"; args = [ bundle.bin ]; });
  Alpha = derivation (base // { name = "evix-test-Alpha"; });
  notADrv = 42;
}
"""


@pytest.fixture(scope="module")
def pkgs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pkgs")
    write_nix(d, "src.txt", "source of the app\n")
    return write_nix(d, "default.nix", PKGS)


def drv_path(value: nixffi.Value) -> str:
    return value.get("drvPath").as_str()


def cli_drv_path(value: nixffi.Value) -> str:
    """The drvPath as nix-instantiate prints it: `!OUTPUT` added unless the output is `out`."""
    output = value.get("outputName").as_str()
    return drv_path(value) + ("" if output == "out" else f"!{output}")


def is_derivation(value: nixffi.Value) -> bool:
    return value.type == nixffi.ValueType.ATTRS and value.has("type") and value.get("type").as_str() == "derivation"


@pytest.mark.parametrize("attr", ["tool", "app", "bundle", "zeta", "Alpha"])
def test_drvpath_matches_nix_instantiate(nix_state: nixffi.EvalState, nix_instantiate: Any,
                                         pkgs_file: Path, attr: str) -> None:
    value = nix_state.eval_file(pkgs_file).get(attr)
    assert cli_drv_path(value) == nix_instantiate(pkgs_file, "-A", attr)
    assert os.path.isfile(drv_path(value)), "instantiating must write the .drv into the store"


def test_whole_file_lists_same_derivations_in_same_order(nix_state: nixffi.EvalState, pkgs_file: Path) -> None:
    """nix-instantiate FILE prints each top-level derivation in attribute-name order."""
    top = nix_state.eval_file(pkgs_file)
    ours = [cli_drv_path(v) for _, v in top.items() if is_derivation(v)]
    theirs = nix_instantiate_all(pkgs_file)
    assert ours == theirs
    assert len(theirs) == 5


def test_multiple_outputs(nix_state: nixffi.EvalState, nix_instantiate: Any, nix_eval_json: Any,
                          pkgs_file: Path) -> None:
    tool = nix_state.eval_file(pkgs_file).get("tool")
    outputs = [o.as_str() for o in tool.get("outputs")]
    assert outputs == nix_eval_json(pkgs_file, "-A", "tool.outputs")
    assert len(outputs) == 3
    for out in outputs:
        sub = tool.get(out)
        assert drv_path(sub) == drv_path(tool)
        assert sub.get("outputName").as_str() == out
        assert nix_instantiate(pkgs_file, "-A", f"tool.{out}") == cli_drv_path(sub)
        assert sub.get("outPath").as_str() == nix_eval_json(pkgs_file, "-A", f"tool.{out}.outPath")
    assert len({tool.get(o).get("outPath").as_str() for o in outputs}) == 3


def test_dependencies_are_input_derivations(nix_state: nixffi.EvalState, pkgs_file: Path) -> None:
    """The .drv of `app` names `tool`'s .drv as input; nix-store agrees."""
    top = nix_state.eval_file(pkgs_file)
    app, tool, bundle = drv_path(top.get("app")), drv_path(top.get("tool")), drv_path(top.get("bundle"))
    refs = run(["nix-store", "--query", "--references", app]).stdout.split()
    assert tool in refs
    assert any(r.endswith("-evix-test-script.sh") for r in refs)
    assert any(r.endswith("-src.txt") for r in refs)
    assert tool in Path(app).read_text()
    bundle_refs = run(["nix-store", "--query", "--references", bundle]).stdout.split()
    assert app in bundle_refs and tool in bundle_refs


@pytest.mark.parametrize(
    "expr",
    [
        '"${pkgs.tool}"',
        '"${pkgs.tool.dev}/include and ${pkgs.app}"',
        "pkgs.tool.drvPath",
        'builtins.toFile "evix-ctx" "x"',
        '"plain string"',
        "pkgs.tool.dev.outPath",
        'builtins.unsafeDiscardStringContext "${pkgs.tool}"',
    ],
)
def test_string_context(nix_state: nixffi.EvalState, nix_eval_json: Any, pkgs_file: Path, expr: str) -> None:
    """A string's context (`Value.string_context`) is what `builtins.getContext` gives in the CLI."""
    full = f"let pkgs = import {pkgs_file}; in {expr}"
    value = nix_state.eval_string(full)
    assert value.string_context() == nix_eval_json(f"builtins.getContext ({full})")
    assert value.as_str() == nix_eval_json(full)


AUTO_CALLED = """
{ x, y, z ? "default-z", p ? null, attrs ? { } }:
derivation {
  name = "evix-test-autocall";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ (toString x) y z (if p == null then "no-p" else "${p}") (builtins.toJSON attrs) ];
}
"""


@pytest.mark.parametrize(
    "args",
    [
        [("x", "1", False), ("y", "foo", True)],
        [("x", "1", False), ("y", "foo", True), ("z", "given-z", True), ("unused", "u", True)],
        [("x", "[ 1 2 ]", False), ("y", "bar", True), ("p", "./data.txt", False)],
        [("x", "1 + 2", False), ("y", "", True), ("attrs", "{ a = 1; b = \"two\"; }", False)],
    ],
    ids=["arg-argstr", "default-overridden-and-unused", "relative-path-arg", "expr-and-attrs"],
)
def test_auto_call_matches_nix_instantiate(nix_state: nixffi.EvalState, nix_instantiate: Any,
                                           tmp_path: Path, args: list[tuple[str, str, bool]]) -> None:
    """`auto_call` with --arg/--argstr gives what `nix-instantiate --arg/--argstr FILE` gives."""
    f = write_nix(tmp_path, "autocall.nix", AUTO_CALLED)
    write_nix(tmp_path, "data.txt", "some data\n")
    cli: list[str] = []
    for name, value, is_string in args:
        cli += ["--argstr" if is_string else "--arg", name, value]
    expected = nix_instantiate(f, *cli, cwd=tmp_path)
    auto = [nixffi.AutoArg(n, v, s) for n, v, s in args]
    result = nix_state.auto_call(nix_state.eval_file(f), auto, base_dir=str(tmp_path))
    assert drv_path(result) == expected


def test_auto_call_functor_and_non_function(nix_state: nixffi.EvalState, nix_instantiate: Any,
                                             tmp_path: Path) -> None:
    functor = write_nix(tmp_path, "functor.nix", """
        { tag = "t"; __functor = self: { x, y ? "d" }:
            derivation { name = "evix-test-functor"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ x y self.tag ]; }; }
    """)
    plain = write_nix(tmp_path, "plain.nix", derivation_nix("evix-test-plain"))
    args = [nixffi.AutoArg("x", "1", True)]
    assert drv_path(nix_state.auto_call(nix_state.eval_file(functor), args)) == nix_instantiate(functor, "--argstr", "x", "1")
    # not a function: returned as it is, the arguments ignored
    assert drv_path(nix_state.auto_call(nix_state.eval_file(plain), args)) == nix_instantiate(plain, "--argstr", "x", "1")


def test_auto_call_missing_argument_fails_like_nix(nix_state: nixffi.EvalState, nix_eval_error: Any,
                                                   tmp_path: Path) -> None:
    f = write_nix(tmp_path, "autocall.nix", AUTO_CALLED)
    expected = nix_eval_error(f, "--arg", "x", "1")  # nix-instantiate refuses too
    with pytest.raises(nixffi.NixError) as e:
        drv_path(nix_state.auto_call(nix_state.eval_file(f), [nixffi.AutoArg("x", "1")]))
    # Nix's own words (autoCallFunction's), the formal's position and the source lines
    assert e.value.message == expected
    assert e.value.info.startswith("cannot evaluate a function that has an argument without a value ('y')")
    # with `...` every argument is passed, and the call fails as Nix's call does
    dots = write_nix(tmp_path, "dots.nix", "{ y, ... }: y")
    with pytest.raises(nixffi.NixError) as e:
        nix_state.auto_call(nix_state.eval_file(dots), [nixffi.AutoArg("x", "1")])
    assert e.value.info == "function 'anonymous lambda' called without required argument 'y'"
    assert e.value.info in nix_eval_error(dots, "--arg", "x", "1")


def test_auto_call_stops_a_functor_that_returns_itself(nix_state: nixffi.EvalState) -> None:
    """Nix follows `{ __functor = self: self; }` forever; auto_call gives up with an error."""
    with pytest.raises(nixffi.NixError, match="__functor returned a set with __functor"):
        nix_state.auto_call(nix_state.eval_string("{ __functor = self: self; }"), [])


async def test_drvpaths_match_parallel_cli(nix_state: nixffi.EvalState, pkgs_file: Path) -> None:
    """Under trio: nixffi on the main thread, several nix-instantiate processes at once."""
    top = nix_state.eval_file(pkgs_file)
    ours = {name: cli_drv_path(v) for name, v in top.items() if is_derivation(v)}
    theirs: dict[str, str] = {}
    limit = trio.CapacityLimiter(2)

    async def one(name: str) -> None:
        async with limit:
            theirs[name] = await nix_instantiate_async(pkgs_file, "-A", name)

    async with trio.open_nursery() as nursery:
        for name in ours:
            nursery.start_soon(one, name)
    assert theirs == ours


def test_eval_file_directory_and_relative(nix_state: nixffi.EvalState, nix_instantiate: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """eval_file takes a file or a directory (its default.nix), relative to the cwd."""
    d = tmp_path / "proj"
    write_nix(d, "default.nix", 'import ./drv.nix { n = "evix-test-dir"; }')
    write_nix(d, "drv.nix", "{ n }: " + derivation_nix("${n}"))
    expected = nix_instantiate(d)
    assert drv_path(nix_state.eval_file(d)) == expected
    monkeypatch.chdir(tmp_path)
    assert drv_path(nix_state.eval_file("proj/default.nix")) == expected
    assert drv_path(nix_state.eval_file(Path("proj"))) == expected


def test_eval_string_base_dir(nix_state: nixffi.EvalState, nix_instantiate: Any, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths in an expression resolve against base_dir (default: the cwd), as in the CLI's cwd."""
    d = tmp_path / "base"
    write_nix(d, "x.nix", 'import ./sub/y.nix { n = "evix-test-basedir"; }')
    write_nix(d, "sub/y.nix", "{ n }: " + derivation_nix("${n}", src="./y.nix"))
    expected = nix_instantiate("import ./x.nix", cwd=d)
    assert drv_path(nix_state.eval_string("import ./x.nix", base_dir=d)) == expected
    assert nix_state.eval_string("./x.nix", base_dir=str(d)).as_path() == str(d / "x.nix")
    monkeypatch.chdir(d)
    assert drv_path(nix_state.eval_string("import ./x.nix")) == expected
    monkeypatch.chdir(tmp_path)
    with pytest.raises(nixffi.NixError) as e:
        nix_state.eval_string("import ./x.nix").force()
    assert str(tmp_path / "x.nix") in e.value.message


def test_lookup_path_entries(nix_store: nixffi.Store, nix_instantiate: Any, nix_eval_json: Any,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-I`-style lookup_path makes <foo> resolve, and wins over NIX_PATH, as in nix-instantiate."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_nix(a, "drv.nix", derivation_nix("evix-test-lookup-a"))
    write_nix(b, "drv.nix", derivation_nix("evix-test-lookup-b"))
    write_nix(b, "other.nix", derivation_nix("evix-test-lookup-other"))
    monkeypatch.setenv("NIX_PATH", f"foo={b}:bar={b}")
    env = dict(os.environ)
    state = nixffi.EvalState(nix_store, lookup_path=[f"foo={a}"])
    assert state.eval_string("<foo>").as_path() == str(a)
    assert nix_eval_json("toString <foo>", "-I", f"foo={a}", env=env) == str(a)
    assert drv_path(state.eval_string("import <foo/drv.nix>")) == nix_instantiate("import <foo/drv.nix>", "-I", f"foo={a}", env=env)
    # from NIX_PATH
    assert state.eval_string("<bar>").as_path() == str(b)
    assert drv_path(state.eval_string("import <bar/other.nix>")) == nix_instantiate("import <bar/other.nix>", env=env)


def test_lookup_path_from_nix_path_only(nix_store: nixffi.Store, nix_instantiate: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_nix(tmp_path, "drv.nix", derivation_nix("evix-test-nixpath"))
    monkeypatch.setenv("NIX_PATH", f"evixtest={tmp_path}")
    state = nixffi.EvalState(nix_store)
    expected = nix_instantiate("import <evixtest/drv.nix>", env=dict(os.environ))
    assert drv_path(state.eval_string("import <evixtest/drv.nix>")) == expected
    monkeypatch.delenv("NIX_PATH")
    with pytest.raises(nixffi.NixError) as e:
        nixffi.EvalState(nix_store).eval_string("<evixtest>").force()
    assert "evixtest" in e.value.message and "search path" in e.value.message


def test_chroot_store_same_drv_hash(nix_instantiate: Any, tmp_path: Path) -> None:
    """A `local?root=DIR` store writes the same .drv (same hash) under DIR/nix/store, not in /nix/store."""
    root = tmp_path / "chroot"
    expr = derivation_nix("evix-test-chroot", marker=f'"{tmp_path}"')  # unique per run
    store = nixffi.Store(f"local?root={root}")
    assert store.uri.startswith("local")
    assert store.store_dir == "/nix/store"
    assert store.version == nixffi.nix_version()
    ours = nixffi.EvalState(store).eval_string(expr).get("drvPath").as_str()
    assert (root / ours.lstrip("/")).is_file()
    assert store.is_valid_path(ours)
    assert not os.path.exists(ours)
    assert not nixffi.Store().is_valid_path(ours)
    assert ours == nix_instantiate(expr, "--store", f"local?root={root}")
    assert ours == nix_instantiate(expr)  # the real store: same hash
    assert nixffi.Store().is_valid_path(ours)


def test_bad_store_uri_raises() -> None:
    with pytest.raises(nixffi.NixError) as e:
        nixffi.Store("no-such-scheme://x")
    assert "no-such-scheme" in e.value.message
    assert e.value.error_type.startswith("nix::")
