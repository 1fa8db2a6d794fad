"""The C hot path's JSON and protocol.events agree, byte for byte, on every event kind.

A real `evix eval` (real workers, real Nix) evaluates attributes with awkward names: each
line must decode to the kind, path and values Nix has, and encoding those decoded values
again with protocol.events (and orjson for the parts the C helper writes) must give back
the very same bytes. The error of a worker killed on its timeout comes from the master's
encoder, the other events from the worker's.
"""

from __future__ import annotations

import orjson
import pytest

from evix_helpers import eval_locally, nix_drv_paths, nix_string
from protocol.events import (
    Attrset,
    Derivation,
    Error,
    EventKind,
    attrset_event,
    derivation_event,
    error_event,
    event_from_json,
    event_kind,
    format_attr,
    parse_attr,
)
from test_engine_failures import SLOW  # ~4 s of CPU: killed on its 1 s timeout

ODD = ["dot.ted", 'q"uote', "back\\slash", "${interp}", "new\nline", "ünï-ℵ", "if", "with space", "",
       "tab\tx", "ctrl\x01", "a-b'c_1"]
SLOW_NAME = 'slow."${x}"\nü'


def _system(name: str) -> str:
    """An odd system string for `name` that Nix 2.26 accepts: a drv with '"' or '\\' in an
    attribute fails to parse back, and an empty system counts as missing."""
    return "sys " + name.replace('"', "'").replace("\\", "/")


def _source() -> str:
    """For each odd name n: a set n (traversed) holding a derivation n (meta, an odd system,
    two outputs, an input drv) and an attribute n + "!" that throws n; an aggregate; a slow one."""
    members = []
    for i, n in enumerate(ODD):
        q, qe, qs = nix_string(n), nix_string(n + "!"), nix_string(_system(n))
        members.append(
            f"{q} = {{ recurseForDerivations = true; "
            f"{q} = mk {{ name = \"d{i}\"; system = {qs}; dep = base; outputs = [ \"out\" \"dev\" ]; "
            f"meta = {{ description = {q}; }}; }}; {qe} = throw {q}; }};"
        )
    return (
        "let mk = a: derivation ({ builder = \"/bin/sh\"; system = \"x86_64-linux\"; } // removeAttrs a [ \"meta\" ])\n"
        "      // { meta = a.meta or { }; };\n"
        "    base = mk { name = \"base\"; }; in {\n  base = base;\n  " + "\n  ".join(members) + "\n"
        f"  agg = mk {{ name = \"agg\"; _hydraAggregate = true; "
        f"constituents = [ base {nix_string('x.' + ODD[1])} ]; }};\n"
        f"  {nix_string(SLOW_NAME)} = mk {{ name = \"slow-${{toString ({SLOW})}}\"; }};\n}}\n"
    )


def _expected() -> dict[tuple[str, ...], EventKind]:
    kinds = {(): EventKind.ATTRSET, ("base",): EventKind.DERIVATION, ("agg",): EventKind.DERIVATION,
             (SLOW_NAME,): EventKind.ERROR}
    for n in ODD:
        kinds[(n,)] = EventKind.ATTRSET
        kinds[(n, n)] = EventKind.DERIVATION
        kinds[(n, n + "!")] = EventKind.ERROR
    return kinds


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[bytes]]:
    source = _source()
    f = tmp_path_factory.mktemp("odd") / "odd.nix"
    f.write_text(source)
    run = eval_locally("--file", str(f), "--meta", "--show-input-drvs", "--timeout", "1", timeout=300)
    assert run.code == 0, run.stderr
    return source, [line for line in run.stdout.split(b"\n") if line]


def _reencoded(line: bytes) -> bytes:
    """The line written again from its decoded values with protocol.events (orjson for the
    members the C helper writes: derivation fields and attribute names)."""
    d = orjson.loads(line)
    e = event_from_json(d)
    if isinstance(e, Error):
        return error_event(e.attr, e.attr_path, e.error, e.fatal)
    if isinstance(e, Attrset):
        return attrset_event(e.attr, e.attr_path, orjson.dumps(e.attrs))
    assert isinstance(e, Derivation)
    fields = orjson.dumps({"name": e.name, "system": e.system, "drvPath": e.drv_path, "outputs": e.outputs})[1:-1]
    extras = [None if x is None else orjson.dumps(x) for x in (e.meta, e.input_drvs, e.constituents)]
    return derivation_event(e.attr, e.attr_path, fields, *extras)


def test_every_line_decodes_to_its_kind_and_path(run: tuple[str, list[bytes]]) -> None:
    _, lines = run
    decoded = [event_from_json(orjson.loads(line)) for line in lines]
    seen = {e.attr_path: event_kind(orjson.loads(line)) for e, line in zip(decoded, lines)}
    assert seen == _expected()
    for e in decoded:
        assert parse_attr(e.attr) == list(e.attr_path) and format_attr(e.attr_path) == e.attr


def test_c_and_python_encodings_are_the_same_bytes(run: tuple[str, list[bytes]]) -> None:
    _, lines = run
    for line in lines:
        assert _reencoded(line) == line


def test_decoded_values_are_what_nix_has(run: tuple[str, list[bytes]]) -> None:
    source, lines = run
    events = {e.attr_path: e for e in (event_from_json(orjson.loads(line)) for line in lines)}
    drvs = {p: e for p, e in events.items() if isinstance(e, Derivation)}
    truth = nix_drv_paths(source, [list(p) for p in drvs])
    base = truth["base"]
    for path, e in drvs.items():
        assert e.drv_path == truth[".".join(path)], path
    for n in ODD:
        drv = drvs[(n, n)]
        assert drv.system == _system(n) and drv.meta == {"description": n}
        assert set(drv.outputs) == {"out", "dev"} and all(p.startswith("/nix/store/") for p in drv.outputs.values())
        assert drv.input_drvs == {base: ["out"]}
        error = events[(n, n + "!")]
        assert isinstance(error, Error) and error.fatal is False
        assert all(part in error.error for part in n.split("\n"))  # Nix indents the lines of a message
        assert events[(n,)].attrs == sorted([n, n + "!", "recurseForDerivations"])  # type: ignore[union-attr]
    assert drvs[("agg",)].constituents == [base, "x." + ODD[1]]
    assert events[()].attrs == sorted(["base", "agg", SLOW_NAME, *ODD])  # type: ignore[union-attr]
    slow = events[(SLOW_NAME,)]
    assert isinstance(slow, Error) and "timed out" in slow.error  # written by the master, not the worker


def test_a_non_event_has_no_kind() -> None:
    with pytest.raises(ValueError, match="not an evix event"):
        event_kind({"attr": "a", "attrPath": ["a"]})


@pytest.mark.parametrize("path", [["a"], ODD, ["x", "new\nline"], []])
def test_encoders_write_what_a_json_encoder_writes(path: list[str]) -> None:
    attr = format_attr(path)
    for fatal in (False, True):
        expected = orjson.dumps({"attr": attr, "attrPath": path, "error": "why\n\"ü\"", "fatal": fatal})
        assert error_event(attr, tuple(path), "why\n\"ü\"", fatal) == expected
    attrset = orjson.dumps({"attr": attr, "attrPath": path, "attrs": path})
    assert attrset_event(attr, path, orjson.dumps(path)) == attrset
    fields = {"name": "n", "system": "s", "drvPath": "/d", "outputs": {"out": None}}
    extras = {"meta": {"k": [1]}, "inputDrvs": {"/i": ["out"]}, "constituents": ["/c"]}
    line = derivation_event(attr, path, orjson.dumps(fields)[1:-1], *(orjson.dumps(v) for v in extras.values()))
    assert line == orjson.dumps({"attr": attr, "attrPath": path, **fields, **extras})
    assert derivation_event(attr, path, orjson.dumps(fields)[1:-1], None, orjson.dumps(["x"])) == orjson.dumps(
        {"attr": attr, "attrPath": path, **fields, "inputDrvs": ["x"]})
