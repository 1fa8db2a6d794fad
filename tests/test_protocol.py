"""Pure protocol pieces: attr quoting, config canonical form, wire framing, filters, .drv parsing."""

from __future__ import annotations

import pytest

from evix_worker.drvfile import DrvParseError, parse_input_drvs
from protocol import wire
from protocol.config import Arg, ConfigError, EvalConfig
from protocol.events import format_attr, parse_attr
from protocol.query import Filter


@pytest.mark.parametrize(
    "path",
    [[], ["a"], ["a", "b"], ["dotted.name"], ["with space", "x"], ["ünï"], ["if"], ['q"uote'], ["back\\slash"],
     ["${interp}"], ["new\nline"], [""], ["a-b'c_1"]],
)
def test_attr_round_trips(path):
    assert parse_attr(format_attr(path)) == path


def test_attr_is_unambiguous():
    assert format_attr(["a.b"]) != format_attr(["a", "b"])
    assert format_attr(["packages", "x86_64-linux", "hello"]) == "packages.x86_64-linux.hello"
    assert format_attr(["if"]) == '"if"'


def test_config_key_is_canonical_and_ignores_how():
    base = EvalConfig(file="/x.nix", args=(Arg("a", "1"), Arg("b", "x", True)), options=(("k", "v"),))
    same = EvalConfig(file="/x.nix", args=(Arg("b", "x", True), Arg("a", "1")), options=(("k", "v"),),
                      workers=8, max_memory_mb=1, item_timeout=2.0, gc_roots_dir="/r")
    assert base.session_key() == same.session_key()
    for changed in (EvalConfig(file="/y.nix"), EvalConfig(file="/x.nix", meta=True),
                    EvalConfig(file="/x.nix", force_recurse=True), EvalConfig(file="/x.nix", show_input_drvs=True),
                    EvalConfig(file="/x.nix", max_depth=7)):
        assert changed.session_key() != base.session_key()


def test_config_json_round_trip_and_rejects_unknown_fields():
    c = EvalConfig(flake="/f#x", override_inputs=(("dep", "path:/d"),), lookup_path=("n=/p",), workers=3, item_timeout=1.5,
                   max_depth=12, override_flakes=(("nixpkgs", "path:/n"),))
    assert EvalConfig.from_json(c.to_json()) == c and c.to_json()["maxDepth"] == 12
    assert c.to_json()["overrideFlakes"] == [["nixpkgs", "path:/n"]]
    with pytest.raises(ConfigError, match="overrideFlakes"):
        EvalConfig.from_json({"flake": "/f", "overrideFlakes": [["nixpkgs"]]})
    with pytest.raises(ConfigError, match="--max-depth"):
        EvalConfig.from_json({"file": "/x", "maxDepth": 0}).validate()
    with pytest.raises(ConfigError, match="unknown config field"):
        EvalConfig.from_json({"file": "/x", "wrokers": 2})
    with pytest.raises(ConfigError, match="workers must be an integer, not a string"):
        EvalConfig.from_json({"file": "/x", "workers": "2"})
    with pytest.raises(ConfigError, match="exactly one of"):
        EvalConfig(file="/x", expr="{}").validate()


def test_resolved_makes_local_paths_absolute():
    c = EvalConfig(flake=".#jobs", override_inputs=(("d", "./dep"),), gc_roots_dir="roots",
                   override_flakes=(("nixpkgs", "path:./n"),)).resolved("/work/p")
    assert c.flake == "/work/p#jobs" and c.override_inputs == (("d", "/work/p/dep"),)
    assert c.override_flakes == (("nixpkgs", "path:/work/p/n"),)  # ORIGINAL stays as given
    assert c.gc_roots_dir == "/work/p/roots" and c.base_dir == "/work/p"
    assert EvalConfig(flake="github:o/r#x").resolved("/w").flake == "github:o/r#x"


def test_wire_messages_round_trip_through_framing():
    result = wire.Result(7, b'{"a":1}\n', b"[]", 3, 1, 2, True, 1234)
    frame = wire.encode_response(result)
    header = frame[: wire.header_size(frame[:4])]
    assert wire.frame_size(header) == len(frame)
    assert wire.decode_response(frame) == result
    for msg in (wire.Setup(wire.PROTOCOL_VERSION, b"{}"), wire.Work(1, b"[]"), wire.Shutdown()):
        assert wire.decode_request(wire.encode_request(msg)) == msg
    with pytest.raises(wire.ProtocolError):
        wire.decode_response(b"\x00" * 16)


def test_filter_semantics():
    f = Filter(attr_prefix=("a.b",)).compile()
    assert f.matches("a.b.c", ("a", "b", "c"), "n", "s", "d")
    assert not f.matches("a.bc", ("a", "bc"), "n", "s", "d")
    g = Filter(attr_globs=("pkgs.*",), systems=("x86_64-linux",)).compile()
    assert g.matches("pkgs.py.x", ("pkgs", "py", "x"), "n", "x86_64-linux", "d")
    assert not g.matches("pkgs.py.x", ("pkgs", "py", "x"), "n", "aarch64-linux", "d")
    assert Filter.from_json(Filter(names=("x",), drv_paths=("/d",)).to_json()) == Filter(names=("x",), drv_paths=("/d",))
    with pytest.raises(ValueError):
        Filter.from_json({"bogus": 1})


def test_drv_input_parsing():
    text = ('Derive([("out","/nix/store/o-x","","")],[("/nix/store/a-dep.drv",["dev","out"]),'
            '("/nix/store/b-q\\"uote.drv",["out"])],["/nix/store/src"],"x86_64-linux","/bin/sh",[],[])')
    assert parse_input_drvs(text) == {"/nix/store/a-dep.drv": ["dev", "out"], '/nix/store/b-q"uote.drv': ["out"]}
    with pytest.raises(DrvParseError):
        parse_input_drvs("not a drv")


def test_base_dir_is_part_of_the_key_only_where_it_resolves_paths():
    f = EvalConfig(file="/x.nix")
    assert f.resolved("/a").session_key() == f.resolved("/b").session_key()
    e = EvalConfig(expr="import ./x.nix")
    assert e.resolved("/a").session_key() != e.resolved("/b").session_key()
    a = EvalConfig(file="/x.nix", args=(Arg("p", "./p"),))
    assert a.resolved("/a").session_key() != a.resolved("/b").session_key()
    for flag in ("select", "apply"):  # Nix expressions too, evaluated against baseDir
        s = EvalConfig(file="/x.nix", **{flag: "r: import ./s.nix r"})
        assert s.resolved("/a").session_key() != s.resolved("/b").session_key()
