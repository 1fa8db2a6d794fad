"""The daemon's methods over its socket, with a real `evixd` process and real Nix:
eval -> query -> diff, every filter, concurrency, and bad input that must not hurt it."""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from daemon_fixtures import (
    Daemon,
    config_for,
    daemon_fixture,
    derivation_lines,
    eval_lines,
    short_dir,
    write_jobs,
    write_many,
)

from evix_client.daemon_client import DaemonClient
from evix_helpers import wait_until
from protocol import rpc


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    yield from daemon_fixture("--max-request-kib", "64", "--warm-seconds", "30", "--max-warm-workers", "1")


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def jobs(daemon: Daemon, work: Path) -> tuple[dict, dict[str, bytes]]:
    """A warm session of the small job set: (its config, attr -> derivation line)."""
    nix = write_jobs(work / "jobs.nix")
    config = config_for(nix)
    lines, summary = eval_lines(daemon, config)
    drvs = derivation_lines(lines)
    assert summary["derivations"] == len(drvs) == 7 and summary["errors"] == 1
    return config, drvs


def query(daemon: Daemon, config: dict, flt: dict | None = None, fmt: str = "objects") -> dict:
    params = {"config": config, "format": fmt}
    if flt is not None:
        params["filter"] = flt
    return daemon.call("query", params)


# ---- eval / query / diff -------------------------------------------------------------
def test_eval_streams_every_event_then_answers_a_summary(daemon: Daemon, work: Path) -> None:
    nix = write_jobs(work / "stream.nix")
    seen: list[str] = []
    with daemon.client() as c:
        summary = c.call("eval", {"config": config_for(nix)}, on_events=seen.append)
    lines = "".join(seen).encode().splitlines()
    kinds = [next(k for k in ("drvPath", "error", "attrs") if k in orjson.loads(x)) for x in lines]
    assert kinds.count("drvPath") == summary["derivations"] == 7
    assert kinds.count("error") == summary["errors"] == 1
    assert kinds.count("attrs") == 3  # the root, pkgs, pkgsx
    assert summary["seconds"] > 0 and len(summary["session"]) == 64


def test_query_returns_the_eval_lines_verbatim(daemon: Daemon, jobs: tuple) -> None:
    config, drvs = jobs
    everything = query(daemon, config, fmt="ndjson")
    assert everything["count"] == 7
    assert everything["ndjson"].encode().splitlines() == [drvs[a] for a in sorted(drvs, key=_path_key(drvs))]
    started = time.perf_counter()
    objects = query(daemon, config)
    client_ms = (time.perf_counter() - started) * 1000
    assert objects["derivations"] == [orjson.loads(drvs[a]) for a in sorted(drvs, key=_path_key(drvs))]
    # the daemon's own share of the round trip, in milliseconds: not nothing, and within it
    assert 0 < objects["serverMs"] <= client_ms


def _path_key(drvs: dict[str, bytes]):  # noqa: ANN202
    return lambda a: orjson.loads(drvs[a])["attrPath"]


@pytest.mark.parametrize("flt, attrs", [
    ({"systems": ["aarch64-linux"]}, ["arm"]),
    ({"attrPrefix": ["pkgs"]}, ["pkgs.a", 'pkgs."a.b"', "pkgs.b"]),
    ({"attrPrefix": ['pkgs."a.b"']}, ['pkgs."a.b"']),
    ({"attrPrefix": ["pkgs.a"]}, ["pkgs.a"]),
    ({"names": ["hello-1.0", "c-1"]}, ["hello", "pkgsx.c"]),
    ({"attrGlobs": ["pkgs*.?"]}, ["pkgs.a", "pkgs.b", "pkgsx.c"]),
    ({"systems": ["x86_64-linux"], "attrPrefix": ["pkgs", "pkgsx"], "attrGlobs": ["*.[ac]"]},
     ["pkgs.a", "pkgsx.c"]),
    ({"names": ["nothing-9"]}, []),
])
def test_each_filter_selects_exactly_its_derivations(daemon: Daemon, jobs: tuple, flt: dict, attrs: list) -> None:
    config, drvs = jobs
    result = query(daemon, config, flt)
    assert sorted(d["attr"] for d in result["derivations"]) == sorted(attrs)
    assert result["count"] == len(attrs)
    assert all(orjson.dumps(d) == drvs[d["attr"]] for d in result["derivations"])


def test_drv_path_filter(daemon: Daemon, jobs: tuple) -> None:
    config, drvs = jobs
    world = orjson.loads(drvs["world"])["drvPath"]
    result = query(daemon, config, {"drvPaths": [world]})
    assert [d["attr"] for d in result["derivations"]] == ["world"]


def test_query_finds_the_session_whatever_the_worker_settings(daemon: Daemon, jobs: tuple) -> None:
    config, _ = jobs
    other_how = dict(config, workers=3, maxMemoryMb=1000, itemTimeout=30.0)
    assert query(daemon, other_how)["count"] == 7


def test_query_without_a_session_names_the_config(daemon: Daemon, work: Path) -> None:
    config = config_for(work / "never-evaluated.nix")
    with pytest.raises(rpc.NoSessionError) as e:
        query(daemon, config)
    assert "never-evaluated.nix" in e.value.message and len(e.value.data["key"]) == 64


def test_diff_after_editing_the_file_reports_added_removed_changed(daemon: Daemon, work: Path) -> None:
    nix = write_jobs(work / "edit.nix")
    config = config_for(nix)
    lines, _ = eval_lines(daemon, config)
    before = derivation_lines(lines)
    text = nix.read_text().replace('world = mk "world-2.0";', "").replace('"hello-1.0"', '"hello-1.1"')
    nix.write_text(text.replace("  \n}", '  extra = mk "extra-1";\n}'))
    diff = daemon.call("diff", {"config": config})
    assert [a["attr"] for a in diff["added"]] == ["extra"]
    assert [r["attr"] for r in diff["removed"]] == ["world"]
    assert [c["attr"] for c in diff["changed"]] == ["hello"]
    changed = diff["changed"][0]
    assert changed["oldDrvPath"] == orjson.loads(before["hello"])["drvPath"] != changed["drvPath"]
    assert [e["attr"] for e in diff["errors"]] == ["broken"]
    # the new graph is the warm one now
    names = {d["attr"]: d["name"] for d in query(daemon, config)["derivations"]}
    assert names["hello"] == "hello-1.1" and "world" not in names and "extra" in names
    again = daemon.call("diff", {"config": config})
    assert again["added"] == again["removed"] == again["changed"] == []


def test_diff_needs_a_warm_session(daemon: Daemon, work: Path) -> None:
    with pytest.raises(rpc.NoSessionError):
        daemon.call("diff", {"config": config_for(work / "nothing.nix")})


def test_eval_of_an_input_that_cannot_load_is_an_eval_error(daemon: Daemon, work: Path) -> None:
    bad = work / "syntax.nix"
    bad.write_text("{ this is not nix")
    with pytest.raises(rpc.EvalFailedError) as e:
        daemon.call("eval", {"config": config_for(bad)})
    assert "syntax.nix" in e.value.message
    with pytest.raises(rpc.NoSessionError):  # a failed first eval leaves no session behind
        query(daemon, config_for(bad))


def test_relative_paths_need_a_base_dir(daemon: Daemon) -> None:
    with pytest.raises(rpc.InvalidParamsError, match="baseDir"):
        daemon.call("eval", {"config": {"file": "jobs.nix"}})


# ---- concurrency ------------------------------------------------------------------------
def test_two_clients_evaluate_one_session_at_once(daemon: Daemon, work: Path) -> None:
    nix = write_many(work / "shared.nix", 600)
    config = config_for(nix)
    results: list[tuple[list[bytes], dict]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(eval_lines(daemon, config))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    (a, sa), (b, sb) = results
    assert sorted(a) == sorted(b) and len(derivation_lines(a)) == 600
    assert sa["session"] == sb["session"]
    session = next(s for s in daemon.call("sessions") if s["key"] == sa["session"])
    assert session["evaluations"] == 2 and session["derivations"] == 600


def test_queries_answer_from_the_warm_graph_while_it_is_re_evaluated(daemon: Daemon, work: Path) -> None:
    nix = write_many(work / "busy.nix", 3000)
    config = config_for(nix)
    eval_lines(daemon, config)
    first_event = threading.Event()
    done = threading.Event()

    def evaluate() -> None:
        with daemon.client() as c:
            c.call("eval", {"config": config}, on_events=lambda _: first_event.set())
        done.set()

    t = threading.Thread(target=evaluate)
    t.start()
    assert first_event.wait(60)
    during: list[tuple[int, bool]] = []
    while not done.is_set():
        count = query(daemon, config, {"attrPrefix": ["g3"]})["count"]
        during.append((count, done.is_set()))
    t.join(60)
    assert any(not finished for _, finished in during), "no query ran during the evaluation"
    assert {count for count, _ in during} == {300}


def test_fifty_concurrent_queries_are_all_correct(daemon: Daemon, jobs: tuple) -> None:
    config, drvs = jobs
    cases = [
        ({"systems": ["aarch64-linux"]}, {"arm"}),
        ({"attrPrefix": ["pkgs"]}, {"pkgs.a", "pkgs.b", 'pkgs."a.b"'}),
        ({"names": ["world-2.0"]}, {"world"}),
        ({"attrGlobs": ["h*"]}, {"hello"}),
        ({}, set(drvs)),
    ]
    barrier = threading.Barrier(50)

    def one(i: int) -> bool:
        flt, expected = cases[i % len(cases)]
        with DaemonClient.connect(str(daemon.socket)) as c:
            barrier.wait(30)
            result = c.call("query", {"config": config, "filter": flt, "format": "ndjson"})
        got = {orjson.loads(x)["attr"]: x for x in result["ndjson"].encode().splitlines()}
        return set(got) == expected and all(drvs[a] == line for a, line in got.items())

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(one, range(50)))
    assert outcomes == [True] * 50


# ---- bad input leaves the daemon serving -------------------------------------------------
def _still_serving(daemon: Daemon, jobs: tuple) -> None:
    assert query(daemon, jobs[0])["count"] == 7


def test_malformed_json_is_a_parse_error_and_the_connection_goes_on(daemon: Daemon, jobs: tuple) -> None:
    with daemon.raw() as conn:
        conn.send(b'{"jsonrpc": "2.0", "method": \n')
        err = conn.read()
        assert err["id"] is None and err["error"]["code"] == -32700
        conn.send_json({"jsonrpc": "2.0", "id": 2, "method": "status"})
        assert conn.read()["result"]["protocolVersion"] == rpc.PROTOCOL_VERSION
    _still_serving(daemon, jobs)


def test_unknown_method_and_bad_params_get_their_codes(daemon: Daemon, jobs: tuple) -> None:
    with daemon.raw() as conn:
        conn.send_json({"jsonrpc": "2.0", "id": "a", "method": "build"})
        assert conn.read() == {"jsonrpc": "2.0", "id": "a", "error": {
            "code": -32601, "message": "method not found: build",
            "data": {"methods": sorted(rpc.METHODS)}}}
        conn.send_json({"jsonrpc": "2.0", "id": 7, "method": "query", "params": {"config": jobs[0], "filter": 3}})
        bad = conn.read()
        assert bad["id"] == 7 and bad["error"]["code"] == -32602
        conn.send_json({"jsonrpc": "2.0", "id": 8, "method": "eval", "params": {"config": {"file": "/x", "nope": 1}}})
        assert conn.read()["error"]["code"] == -32602
        conn.send_json({"jsonrpc": "1.0", "id": 9, "method": "status"})
        assert conn.read()["error"] == {"code": -32600, "message": '"jsonrpc" must be "2.0"'}
    _still_serving(daemon, jobs)


def test_batches_answer_per_member_and_notifications_get_no_answer(daemon: Daemon, jobs: tuple) -> None:
    with daemon.raw() as conn:
        conn.send_json([
            {"jsonrpc": "2.0", "id": 1, "method": "status"},
            {"jsonrpc": "2.0", "method": "status"},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            42,
            {"jsonrpc": "2.0", "id": 3, "method": "query", "params": {"config": jobs[0], "filter": {"names": ["b-1"]}}},
        ])
        answers = conn.read()
        assert [a["id"] for a in answers] == [1, 2, None, 3]
        assert "result" in answers[0]
        assert answers[1]["error"]["code"] == -32601 and answers[2]["error"]["code"] == -32600
        assert [d["attr"] for d in answers[3]["result"]["derivations"]] == ["pkgs.b"]
        conn.send_json([{"jsonrpc": "2.0", "method": "status"}, {"jsonrpc": "2.0", "method": "nope"}])
        conn.send_json({"jsonrpc": "2.0", "method": "status"})
        conn.send_json([])
        assert conn.read() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "empty batch"}}
        conn.send_json({"jsonrpc": "2.0", "id": "last", "method": "status"})
        assert conn.read()["id"] == "last"  # nothing was sent for the notifications


def test_an_oversize_request_is_refused_and_the_connection_goes_on(daemon: Daemon, jobs: tuple) -> None:
    with daemon.raw() as conn:
        huge = {"jsonrpc": "2.0", "id": 1, "method": "query", "params": {"config": jobs[0],
                "filter": {"names": ["x" * 100_000]}}}
        conn.send_json(huge)
        err = conn.read()
        assert err["id"] is None and err["error"]["code"] == rpc.RequestTooLargeError.CODE
        assert err["error"]["data"] == {"limit": 64 << 10}
        conn.send_json({"jsonrpc": "2.0", "id": 2, "method": "query", "params": {"config": jobs[0]}})
        assert conn.read()["result"]["count"] == 7
    _still_serving(daemon, jobs)


def test_a_client_that_disconnects_mid_stream_leaves_the_daemon_serving(daemon: Daemon, work: Path,
                                                                         jobs: tuple) -> None:
    nix = write_many(work / "abandoned.nix", 20000)
    config = config_for(nix)
    with daemon.raw() as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config}})
        first = conn.read()
        assert first["method"] == "events" and first["params"]["id"] == 1
    _still_serving(daemon, jobs)
    # nobody is left to read it: the evaluation is cancelled, and a first one leaves no session
    wait_until(lambda: not any(s["input"].endswith("abandoned.nix") for s in daemon.call("sessions")),
               "the abandoned evaluation to be cancelled")
    small = write_many(work / "after.nix", 300)
    lines, summary = eval_lines(daemon, config_for(small))
    assert summary["derivations"] == 300 == len(derivation_lines(lines))
