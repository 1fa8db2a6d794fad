"""The JSON of each daemon method's result (protocol.rpc_results), byte for byte as
docs/protocol.md describes it, fed with what the engine and daemon hand it."""

from __future__ import annotations

import orjson

from evixd.engine import Summary
from evixd.engine.graph import Graph, diff_graphs
from protocol import rpc, rpc_results
from protocol.config import EvalConfig
from protocol.events import derivation_event, error_event

SUMMARY = Summary(derivations=3, errors=1, attrsets=2, seconds=1.23456, workers_started=2, worker_deaths=1,
                  recycled=4, batches=5)
SUMMARY_JSON = (b'{"derivations":3,"errors":1,"seconds":1.235,"workersStarted":2,"workerDeaths":1,"recycled":4,'
                b'"batches":5')


def test_eval_result() -> None:
    result = rpc_results.eval_result(SUMMARY, "k1", "--file /x.nix")
    assert orjson.dumps(result) == SUMMARY_JSON + b',"session":"k1","input":"--file /x.nix"}'
    assert SUMMARY.to_json() == orjson.loads(SUMMARY_JSON + b"}")  # the library's summary has the same shape


def test_query_result_joins_stored_bytes() -> None:
    body = b'[{"attr":"a"}]'
    objects = rpc_results.query_result("k1", 1, 0.12345, "objects", body)
    assert isinstance(objects, rpc.RawResult)
    assert objects.json == b'{"session":"k1","count":1,"serverMs":0.123,"derivations":[{"attr":"a"}]}'
    ndjson = rpc_results.query_result("k1", 0, 2.0, "ndjson", b'""')
    assert ndjson.json == b'{"session":"k1","count":0,"serverMs":2.0,"ndjson":""}'


def _drv(attr: str, drv_path: str) -> bytes:
    fields = orjson.dumps({"name": attr, "system": "x86_64-linux", "drvPath": drv_path, "outputs": {"out": None}})
    return derivation_event(attr, (attr,), fields[1:-1])


def _graph(*lines: bytes) -> Graph:
    graph = Graph()
    graph.add_lines(b"\n".join(lines) + b"\n")
    return graph


def test_diff_result() -> None:
    old = _graph(_drv("a", "/a1"), _drv("b", "/b"), _drv("c", "/c"))
    new = _graph(_drv("a", "/a2"), _drv("c", "/c"), _drv("d", "/d"), error_event("e", ("e",), "boom"))
    result = rpc_results.diff_result(diff_graphs(old, new), SUMMARY, "k1")
    entry = b'{"attr":"%s","attrPath":["%s"],"name":"%s","system":"x86_64-linux","drvPath":"%s"'
    assert orjson.dumps(result) == (
        b'{"added":[' + entry % (b"d", b"d", b"d", b"/d") + b'}],'
        b'"removed":[' + entry % (b"b", b"b", b"b", b"/b") + b'}],'
        b'"changed":[' + entry % (b"a", b"a", b"a", b"/a2") + b',"oldDrvPath":"/a1"}],'
        b'"errors":[{"attr":"e","error":"boom"}],'
        b'"summary":' + SUMMARY_JSON + b'},"session":"k1"}'
    )


def test_session_info_leaves_the_worker_command_out() -> None:
    config = EvalConfig(file="/x.nix", worker_command=("my-worker",))
    info = rpc_results.SessionInfo("k1", config, 3, 1, 4096, False, 2, 1700000000.5, 1.23456, 1, SUMMARY)
    shown = {k: v for k, v in config.to_json().items() if k != "workerCommand"}
    assert orjson.dumps(info.to_json()) == (
        b'{"key":"k1","input":"--file /x.nix","config":' + orjson.dumps(shown) + b',"derivations":3,"errors":1,'
        b'"memoryBytes":4096,"busy":false,"evaluations":2,"evaluatedAt":1700000000.5,"idleSeconds":1.235,'
        b'"warmWorkers":1,"lastSummary":' + SUMMARY_JSON + b"}}"
    )
    fresh = rpc_results.SessionInfo("k2", config, None, None, 0, True, 0, None, 0.0, 0, None).to_json()
    assert [fresh[k] for k in ("derivations", "errors", "evaluatedAt", "lastSummary")] == [None] * 4


def test_status() -> None:
    limits = rpc_results.Limits(64, 4 << 20, 16, 2 << 30, 300.0, 64, 8, 4 << 20, 60.0, 60.0)
    status = rpc_results.Status("0.1", 42, "/run/evix.sock", True, 12.34567, 2, 1, 1000, 3, 5, 4, 50, 60,
                                {"live": 0}, limits)
    assert orjson.dumps(status.to_json()) == (
        b'{"version":"0.1","protocolVersion":%d,"pid":42,"socket":"/run/evix.sock","socketActivated":true,'
        b'"uptimeSeconds":12.346,"connections":2,"sessions":1,"sessionMemoryBytes":1000,'
        b'"workers":{"warm":3,"spawned":5,"processes":4},"memory":{"daemonRss":50,"workersRss":60},'
        b'"eventStreams":{"live":0},'
        b'"limits":{"maxConnections":64,"maxRequestBytes":4194304,"maxSessions":16,"maxSessionMemory":2147483648,'
        b'"warmSeconds":300.0,"maxWorkers":64,"maxWarmWorkers":8,"maxClientBuffer":4194304,"clientTimeout":60.0,'
        b'"idleTimeout":60.0}}' % rpc.PROTOCOL_VERSION
    )


def test_drop_and_shutdown_results() -> None:
    assert orjson.dumps(rpc_results.dropped_result("k1")) == b'{"dropped":"k1"}'
    assert orjson.dumps(rpc_results.stopping_result()) == b'{"stopping":true}'
