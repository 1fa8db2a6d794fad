"""Pure logic of the daemon protocol: framing, JSON-RPC shapes and codes, params, the query
index (against the plain linear filter), socket path rules, import boundaries."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import orjson
import pytest

from evixd.engine.graph import Graph
from evixd.engine.query_index import QueryIndex
from protocol import framing, rpc
from protocol.config import EvalConfig
from protocol.endpoint import socket_path
from protocol.events import format_attr
from protocol.query import Filter


# ---- framing ----------------------------------------------------------------------------
def test_line_buffer_joins_chunks_and_splits_lines() -> None:
    buf = framing.LineBuffer(100)
    assert list(buf.feed(b'{"a":')) == []
    assert list(buf.feed(b'1}\n{"b":2}\n\n{"c"')) == [b'{"a":1}', b'{"b":2}']
    assert list(buf.feed(b":3}\n")) == [b'{"c":3}']
    assert buf.pending == 0


def test_line_buffer_reports_an_oversize_line_once_and_resumes_after_it() -> None:
    buf = framing.LineBuffer(10)
    out = list(buf.feed(b"x" * 25))
    assert len(out) == 1 and isinstance(out[0], framing.FrameTooLarge)
    assert buf.pending == 0  # nothing of the oversize line is kept
    assert list(buf.feed(b"y" * 30)) == []
    assert list(buf.feed(b'yy\n{"ok":1}\n')) == [b'{"ok":1}']


def test_line_buffer_refuses_a_long_line_that_arrives_whole() -> None:
    out = list(framing.LineBuffer(10).feed(b"z" * 11 + b'\n{"a":1}\n'))
    assert isinstance(out[0], framing.FrameTooLarge) and out[1:] == [b'{"a":1}']


def test_decode_reports_invalid_json() -> None:
    with pytest.raises(framing.FrameDecodeError):
        framing.decode(b"{nope")
    assert framing.encode({"a": 1}) == b'{"a":1}\n'
    assert framing.encode(b'{"raw":true}') == b'{"raw":true}\n'


# ---- JSON-RPC shapes --------------------------------------------------------------------
STANDARD = {rpc.ParseError: -32700, rpc.InvalidRequestError: -32600, rpc.MethodNotFoundError: -32601,
            rpc.InvalidParamsError: -32602, rpc.InternalRpcError: -32603}  # from the JSON-RPC 2.0 spec


def test_standard_codes_match_the_json_rpc_spec() -> None:
    for cls, code in STANDARD.items():
        assert cls.CODE == code, cls


def test_every_error_class_has_its_own_code_and_round_trips() -> None:
    classes = [c for c in vars(rpc).values() if isinstance(c, type) and issubclass(c, rpc.RpcError)
               and c not in (rpc.RpcError, rpc.InvalidResponseError)]
    codes = [c.CODE for c in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert cls in STANDARD or -32099 <= cls.CODE <= -32000, f"{cls.__name__} is outside the server range"
        back = rpc.RpcError.from_json(cls("why", {"k": 1}).to_json())
        assert type(back) is cls and back.message == "why" and back.data == {"k": 1}


def test_unknown_error_code_keeps_its_code() -> None:
    err = rpc.RpcError.from_json({"code": -31999, "message": "odd"})
    assert type(err) is rpc.RpcError and err.code == -31999 and err.message == "odd"


@pytest.mark.parametrize("message, request_id", [
    ({"jsonrpc": "1.0", "method": "status", "id": 7}, 7),
    ({"jsonrpc": "2.0", "method": 5, "id": "x"}, "x"),
    ({"jsonrpc": "2.0", "method": "status", "params": 3, "id": 1}, 1),
    ({"jsonrpc": "2.0", "method": "status", "id": 1, "extra": 1}, 1),
    ({"jsonrpc": "2.0", "method": "status", "id": True}, None),
    ([1], None),
])
def test_invalid_requests_carry_the_id_when_it_can_be_read(message: object, request_id: object) -> None:
    with pytest.raises(rpc.InvalidRequestError) as e:
        rpc.parse_call(message)
    assert e.value.request_id == request_id


def test_a_request_without_id_is_a_notification() -> None:
    assert rpc.parse_call({"jsonrpc": "2.0", "method": "status"}).is_notification
    assert not rpc.parse_call({"jsonrpc": "2.0", "method": "status", "id": None}).is_notification


def test_success_embeds_raw_results_verbatim() -> None:
    msg = rpc.success(3, rpc.RawResult(b'{"x":[1,2]}'))
    assert orjson.loads(msg) == {"jsonrpc": "2.0", "id": 3, "result": {"x": [1, 2]}}


# ---- params ------------------------------------------------------------------------------
def _cfg() -> dict[str, object]:
    return EvalConfig(file="/x/jobs.nix", base_dir="/x").to_json()


def test_params_decode_by_name_and_by_position() -> None:
    by_name = rpc.decode_params("query", {"config": _cfg(), "filter": {"systems": ["s"]}, "format": "ndjson"})
    by_pos = rpc.decode_params("query", [_cfg(), {"systems": ["s"]}, "ndjson"])
    assert by_name == by_pos
    assert isinstance(by_name, rpc.QueryParams) and by_name.filter == Filter(systems=("s",))
    assert rpc.decode_params("status", None) == rpc.NoParams()


@pytest.mark.parametrize("method, params, fragment", [
    ("query", {"config": _cfg(), "filter": {"systems": 5}}, "systems"),
    ("query", {"config": _cfg(), "format": "xml"}, "format"),
    ("eval", {}, "missing param: config"),
    ("eval", {"config": dict(_cfg(), bogus=1)}, "bogus"),
    ("eval", {"config": dict(_cfg(), workers="4")}, "workers"),
    ("status", {"verbose": True}, "verbose"),
    ("drop", {"key": ""}, "key"),
    ("diff", [_cfg(), 1, 2], "at most"),
])
def test_bad_params_are_invalid_params(method: str, params: object, fragment: str) -> None:
    with pytest.raises(rpc.InvalidParamsError, match=fragment):
        rpc.decode_params(method, params)


def test_unknown_method_and_version_mismatch() -> None:
    with pytest.raises(rpc.MethodNotFoundError):
        rpc.decode_params("build", {})
    with pytest.raises(rpc.ProtocolVersionError):
        rpc.decode_params("eval", {"config": _cfg(), "protocolVersion": rpc.PROTOCOL_VERSION + 1})


def test_params_round_trip_through_json() -> None:
    p = rpc.QueryParams(EvalConfig(expr="1", base_dir="/"), Filter(attr_prefix=("a",)), "ndjson", 1)
    assert rpc.decode_params("query", orjson.loads(orjson.dumps(p.to_json()))) == p


# ---- the query index agrees with the plain linear filter --------------------------------
def _graph() -> Graph:
    g = Graph()
    paths = [("a",), ("a", "b"), ("a", "b", "c"), ("a", "bc"), ("a", "b.c"), ("ab",), ("b", "a"), ("b", "x", "y"),
             ("z",), ("a", "b", "d")]
    lines = []
    for i, p in enumerate(paths):
        lines.append(orjson.dumps({
            "attr": format_attr(p), "attrPath": list(p), "name": f"n{i % 3}",
            "system": "x86_64-linux" if i % 2 else "aarch64-linux", "drvPath": f"/nix/store/{i:032d}-n.drv",
            "outputs": {"out": f"/nix/store/{i:032d}-n"},
        }))
    g.add_lines(b"\n".join(lines) + b"\n")
    return g


FILTERS = [
    Filter(),
    Filter(attr_prefix=("a",)), Filter(attr_prefix=("a.b",)), Filter(attr_prefix=('a."b.c"',)),
    Filter(attr_prefix=("a.b", "a")), Filter(attr_prefix=("b", "z")), Filter(attr_prefix=("nope",)),
    Filter(attr_prefix=("",)), Filter(attr_prefix=()),
    Filter(systems=("aarch64-linux",)), Filter(names=("n1",)), Filter(names=("n1", "n2"), attr_prefix=("a",)),
    Filter(drv_paths=("/nix/store/00000000000000000000000000000002-n.drv",)),
    Filter(attr_globs=("a.*",)), Filter(attr_globs=("*.?",)), Filter(attr_globs=()),
    Filter(systems=("x86_64-linux",), attr_prefix=("a.b",), attr_globs=("*c",)),
]


@pytest.mark.parametrize("flt", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
def test_query_index_matches_the_linear_filter(flt: Filter) -> None:
    g = _graph()
    index = QueryIndex(g)
    expected = [r.line for r in g.select(flt)]
    got = index.select(flt)
    assert [index.records[i].line for i in got] == expected
    assert orjson.loads(index.objects_json(got)) == [orjson.loads(x) for x in expected]
    assert orjson.loads(index.ndjson_json(got)) == "".join(x.decode() + "\n" for x in expected)


def test_prefix_ranges_stay_correct_on_a_larger_graph() -> None:
    g = Graph()
    lines = []
    for a, b, c in itertools.product("abc", ["x", "x.y", "xy", "y"], range(5)):
        p = (a, b, f"p{c}")
        lines.append(orjson.dumps({"attr": format_attr(p), "attrPath": list(p), "name": "n", "system": "s",
                                   "drvPath": f"/d/{a}{b}{c}", "outputs": {}}))
    g.add_lines(b"\n".join(lines))
    index = QueryIndex(g)
    for prefix in ["a", "a.x", 'a."x.y"', "b.xy", "c.y.p3", "d", "a.x.p9"]:
        flt = Filter(attr_prefix=(prefix,))
        assert [index.records[i].attr for i in index.select(flt)] == [r.attr for r in g.select(flt)], prefix


# ---- socket path and import boundaries --------------------------------------------------
def test_socket_path_prefers_option_then_env_then_runtime_dir() -> None:
    assert socket_path("/a.sock", {"EVIX_SOCKET": "/b.sock"}) == "/a.sock"
    assert socket_path(None, {"EVIX_SOCKET": "/b.sock", "XDG_RUNTIME_DIR": "/r"}) == "/b.sock"
    assert socket_path(None, {"XDG_RUNTIME_DIR": "/r"}) == "/r/evix.sock"
    assert socket_path(None, {}) == f"/run/user/{os.getuid()}/evix.sock"


def test_protocol_and_client_modules_import_no_trio_cffi_or_capnp() -> None:
    code = (
        "import sys\n"
        "import protocol.rpc, protocol.framing, protocol.endpoint\n"
        "import evix_client.main, evix_client.daemon_client, evix_client.daemon_commands\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('trio', 'cffi', '_cffi_backend', 'capnp', 'nixffi', 'evixd', 'jsonrpcserver'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
