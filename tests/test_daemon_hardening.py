"""The daemon against careless clients, with a real `evixd` and real Nix: NUL bytes and bad
shapes in params (-32602 naming the field, in words), clients that close, half-close, never
read, read late or sit idle."""

from __future__ import annotations

import copy
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import module_work  # noqa: F401 (the `work` directory fixture)
from daemon_fixtures import (
    Daemon,
    RawConnection,
    config_for,
    daemon_fixture,
    eval_lines,
    start_daemon,
    write_jobs,
    write_many,
)
from process_watch import assert_none_left, new_tag, wait_for_evaluators, write_slow_jobs

from protocol import rpc

INVALID = rpc.InvalidParamsError.CODE
# Seconds of CPU in Nix with modest memory, and no output until it is done.
SLOW = (
    "let list = builtins.genList (x: x * 7919 - (x / 3) * 5) 200000; in "
    "builtins.foldl' (acc: i: acc + builtins.length (builtins.sort (a: b: a > b) list)) 0 (builtins.genList (x: x) 20)"
)
# What a message must not show: Python's types, exception texts and quoting.
PYTHON_INTERNALS = re.compile(r"object is not|NoneType|subscriptable|has no attribute|unhashable|"
                              r"\b(int|str|dict|list|tuple|bool|float)\b|Traceback|'\w+' object")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    yield from daemon_fixture("--warm-seconds", "0")


def _ask(daemon: Daemon, method: str, params: Any) -> dict[str, Any]:
    with daemon.raw() as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
        return conn.read_response()


# ---- NUL bytes and bad shapes ----------------------------------------------------------
def _base(work: Path) -> dict[str, Any]:
    return config_for(write_jobs(work / "jobs.nix"))


NUL_FIELDS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("config.expr", lambda c: (c.pop("file"), c.update(expr="{ x = 1; }\u0000 garbage ((("))),
    ("config.file", lambda c: c.update(file=c["file"] + "\u0000.nix")),
    ("config.flake", lambda c: (c.pop("file"), c.update(flake="path:/tmp\u0000#x"))),
    ("config.args[0].name", lambda c: c.update(args=[{"name": "a\u0000b", "value": "v", "isString": True}])),
    ("config.args[0].value", lambda c: c.update(args=[{"name": "system", "value": "abc\u0000def", "isString": True}])),
    ("config.overrideInputs[0][0]", lambda c: (c.pop("file"), c.update(flake="path:/tmp", overrideInputs=[["n\u0000", "path:/x"]]))),
    ("config.overrideInputs[0][1]", lambda c: (c.pop("file"), c.update(flake="path:/tmp", overrideInputs=[["n", "path:/x\u0000"]]))),
    ("config.options[0][0]", lambda c: c.update(options=[["cores\u0000", "1"]])),
    ("config.options[0][1]", lambda c: c.update(options=[["cores", "1\u0000"]])),
    ("config.lookupPath[0]", lambda c: c.update(lookupPath=["nixpkgs=/x\u0000"])),
    ("config.nixPath", lambda c: c.update(nixPath="a=/b\u0000")),
    ("config.baseDir", lambda c: c.update(baseDir=c["baseDir"] + "\u0000")),
    ("config.gcRootsDir", lambda c: c.update(gcRootsDir="/tmp/roots\u0000")),
    ("config.workerCommand[0]", lambda c: c.update(workerCommand=["/bin/x\u0000"])),
]


@pytest.mark.parametrize("field, poison", NUL_FIELDS, ids=[f for f, _ in NUL_FIELDS])
def test_a_nul_in_any_config_string_is_refused_naming_the_field(daemon: Daemon, work: Path, field: str,
                                                                poison: Callable[[dict[str, Any]], None]) -> None:
    config = copy.deepcopy(_base(work))
    poison(config)
    for method in ("eval", "query", "diff"):
        answer = _ask(daemon, method, {"config": config})
        assert answer["error"]["code"] == INVALID, answer
        assert answer["error"]["message"].startswith(f"{field} contains a NUL character"), answer
        assert answer["error"]["data"] == {"field": field}


@pytest.mark.parametrize("key", ["systems", "attrPrefix", "names", "drvPaths", "attrGlobs"])
def test_a_nul_in_a_filter_string_is_refused_naming_the_field(daemon: Daemon, work: Path, key: str) -> None:
    answer = _ask(daemon, "query", {"config": _base(work), "filter": {key: ["ok", "x\u0000y"]}})
    assert answer["error"]["code"] == INVALID
    assert answer["error"]["message"].startswith(f"filter.{key}[1] contains a NUL character")


def test_a_nul_in_a_session_key_is_refused(daemon: Daemon) -> None:
    answer = _ask(daemon, "drop", {"key": "abc\u0000"})
    assert answer["error"]["code"] == INVALID and "without NUL characters" in answer["error"]["message"]


def test_the_nul_truncation_no_longer_evaluates_the_part_before_it(daemon: Daemon, work: Path) -> None:
    # The probe: everything before the NUL used to be evaluated, silently.
    answer = _ask(daemon, "eval", {"config": {"expr": 'let mk = name: derivation { inherit name; '
                                              'system = "x"; builder = "/bin/sh"; }; in { x = mk "x"; }'
                                              '\u0000 garbage (((', "baseDir": str(work)}})
    assert "result" not in answer and answer["error"]["code"] == INVALID


BAD_SHAPES: list[tuple[str, dict[str, Any], str]] = [
    ("args", {"args": 5}, "config.args must be an array of {name, value, isString} objects, not a number"),
    ("args[0]", {"args": [1]}, "config.args[0] must be an object with name, value and isString, not a number"),
    ("args[0].name", {"args": [{"name": 1, "value": "x"}]}, "config.args[0].name must be a string, not a number"),
    ("args[0].value", {"args": [{"name": "x"}]}, "config.args[0].value must be a string, not null"),
    ("args[0].isString", {"args": [{"name": "x", "value": "y", "isString": "yes"}]},
     "config.args[0].isString must be true or false, not a string"),
    ("args[0].extra", {"args": [{"name": "x", "value": "y", "bogus": 1}]}, "config.args[0].bogus must be absent"),
    ("options", {"options": "cores=1"}, "config.options must be an array of [setting, value] pairs of strings"),
    ("options[0]", {"options": [["cores"]]}, "config.options[0] must be a [setting, value] pair of strings, "
                                             "not an array of 1"),
    ("options[0][1]", {"options": [["cores", 1]]}, "config.options[0][1] must be a string, not a number"),
    ("overrideInputs", {"overrideInputs": {"a": "b"}}, "config.overrideInputs must be an array of"),
    ("lookupPath[0]", {"lookupPath": [3]}, "config.lookupPath[0] must be a string, not a number"),
    ("workers", {"workers": "2"}, "config.workers must be an integer, not a string"),
    ("workers-bool", {"workers": True}, "config.workers must be an integer, not true"),
    ("itemTimeout", {"itemTimeout": "1"}, "config.itemTimeout must be a number, not a string"),
    ("meta", {"meta": 1}, "config.meta must be true or false, not a number"),
    ("nixPath", {"nixPath": []}, "config.nixPath must be a string, not an array"),
]


@pytest.mark.parametrize("name, change, words", BAD_SHAPES, ids=[n for n, _, _ in BAD_SHAPES])
def test_bad_config_shapes_are_named_in_words(daemon: Daemon, work: Path, name: str, change: dict[str, Any],
                                              words: str) -> None:
    answer = _ask(daemon, "eval", {"config": dict(_base(work), **change)})
    assert answer["error"]["code"] == INVALID, answer
    message = answer["error"]["message"]
    assert message.startswith(words), message
    assert not PYTHON_INTERNALS.search(message), message


@pytest.mark.parametrize("method, params, words", [
    ("eval", {"config": []}, "config must be an object"),
    ("eval", {"config": {"fiel": "/x"}}, "config: unknown config field(s): fiel (known: "),
    ("query", {"filter": {"systems": 5}}, "filter.systems must be a string or an array of strings"),
    ("query", {"filter": 3}, "filter must be a JSON object"),
    ("query", {"format": "xml"}, "format must be one of objects, ndjson"),
    ("drop", {"key": 5}, "key must be a non-empty string"),
    ("eval", {"bogus": 1}, "unknown param(s) for eval: bogus (it takes config, protocolVersion)"),
    ("status", {"x": 1}, "unknown param(s) for status: x (it takes none)"),
])
def test_every_invalid_params_message_says_what_was_expected(daemon: Daemon, work: Path, method: str,
                                                             params: dict[str, Any], words: str) -> None:
    if method == "query":
        params = dict({"config": _base(work)}, **params)
    answer = _ask(daemon, method, params)
    assert answer["error"]["code"] == INVALID, answer
    assert answer["error"]["message"].startswith(words), answer
    assert not PYTHON_INTERNALS.search(answer["error"]["message"])


# ---- clients that close, half-close, or sit idle ---------------------------------------
def test_a_client_that_closes_mid_eval_stops_its_workers_within_a_second(work: Path) -> None:
    tag = new_tag()
    daemon = start_daemon(work / "close.sock", "--warm-seconds", "0", extra_env={"EVIX_TEST_RUN": tag})
    config = config_for(write_slow_jobs(work), workers=2)
    conn = daemon.raw()
    conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config}})
    assert conn.read()["method"] == "events"  # under way
    wait_for_evaluators(tag, 2)
    conn.close()  # a full close: nobody will read the rest
    assert_none_left(tag, within=1.0)
    assert "client gone (it closed its connection)" in daemon.log
    assert daemon.stop() == 0


def test_a_half_closed_client_still_gets_its_answer(daemon: Daemon, work: Path) -> None:
    config = config_for(write_many(work / "half.nix", 3000))
    with daemon.raw() as conn:
        conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config}})
        conn.sock.shutdown(socket.SHUT_WR)  # like `socat`: done sending, still reading
        answer = conn.read_response()
    assert answer["id"] == 1 and answer["result"]["derivations"] == 3000


def test_a_notification_is_carried_out_even_if_its_sender_closes_at_once(daemon: Daemon, work: Path) -> None:
    config = config_for(write_many(work / "fire-and-forget.nix", 500))
    with daemon.raw() as conn:  # like `printf … | nc -U`: send, close, never read
        conn.send_json({"jsonrpc": "2.0", "method": "eval", "params": {"config": config}})
    _poll(lambda: any(s["input"].endswith("fire-and-forget.nix") and s["derivations"] == 500
                      for s in daemon.call("sessions")), timeout=60, what="the notified eval to finish")


def test_idle_connections_are_closed_but_a_streaming_eval_is_not_idle(work: Path) -> None:
    daemon = start_daemon(work / "idle.sock", "--idle-timeout", "1", "--warm-seconds", "0")
    with daemon.raw() as idle:
        started = time.monotonic()
        assert idle.is_closed(timeout=10)
        assert 0.9 < time.monotonic() - started < 8
    # an evaluation that runs for longer than the idle timeout, silent in between
    slow = work / "quiet.nix"
    slow.write_text(f'let x = {SLOW}; in '
                    '{ d = builtins.seq x (derivation { name = "d"; system = "x"; builder = "/bin/sh"; }); }')
    with daemon.raw() as conn:
        started = time.monotonic()
        conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config_for(slow)}})
        answer = conn.read_response()
        assert answer["result"]["derivations"] == 1, answer
        assert time.monotonic() - started > 1  # it did outlast the idle timeout
        # and once answered, the connection is idle again
        assert conn.is_closed(timeout=10)
    assert "closing a connection idle for 1 s" in daemon.log
    assert daemon.stop() == 0


# ---- clients that read slowly or never -------------------------------------------------
META_JOBS = """\
let
  desc = builtins.concatStringsSep "" (builtins.genList (i: "0123456789") 200);
  mk = i: derivation { name = "m-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; salt = "SALT"; }
    // { meta = { description = desc + toString i; }; };
in builtins.listToAttrs (builtins.genList (i: { name = "p${toString i}"; value = mk i; }) COUNT)
"""


def _meta_jobs(work: Path, salt: str, count: int) -> dict[str, Any]:
    path = work / f"meta-{salt}.nix"
    path.write_text(META_JOBS.replace("SALT", salt).replace("COUNT", str(count)))
    return config_for(path, meta=True)


def _poll(check: Callable[[], bool], timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_clients_that_never_read_cost_a_bounded_buffer_given_back_when_they_go(work: Path) -> None:
    limit_kib, count = 1024, 10000
    daemon = start_daemon(work / "stalled.sock", "--max-client-buffer-kib", str(limit_kib),
                          "--client-timeout", "600", "--warm-seconds", "0")
    rss = lambda: daemon.call("status")["memory"]["daemonRss"]  # noqa: E731
    before = rss()
    lines, summary = eval_lines(daemon, _meta_jobs(work, "reader", count))
    output_bytes = sum(len(line) + 1 for line in lines)
    assert summary["derivations"] == count and output_bytes > 20 << 20
    with_reader = rss()
    stalled = []
    for k in range(5):  # five evaluations whose clients never read a byte
        conn = RawConnection(str(daemon.socket))
        conn.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval",
                        "params": {"config": _meta_jobs(work, f"stalled{k}", count)}})
        stalled.append(conn)
    streams = lambda: daemon.call("status")["eventStreams"]  # noqa: E731
    _poll(lambda: streams()["waitingForClient"] == 5, what="five evaluations waiting for their clients")
    time.sleep(1)  # nothing moves any more: they wait
    with_stalled = rss()
    held = streams()["bufferedBytes"]
    # each holds about its buffer (plus the batch it was taking in), never its output
    assert held < 5 * (limit_kib << 10) + (8 << 20), held
    growth = with_stalled - with_reader
    assert growth < (with_reader - before), (growth, with_reader - before)  # less than one warm graph
    assert growth < 64 << 20, growth  # unbounded, they would hold 5 x 20+ MiB, decoded and re-encoded
    assert daemon.call("query", {"config": _meta_jobs(work, "reader", count),
                                 "filter": {"names": ["m-7"]}})["count"] == 1  # still serving
    for conn in stalled:
        conn.close()
    _poll(lambda: streams()["streams"] == 0 and not daemon.call("sessions")[1:], timeout=30,
          what="the abandoned evaluations to end")
    after = rss()
    assert after - with_reader < 16 << 20, (after - with_reader)  # given back
    assert daemon.stop() == 0


def test_a_client_that_stops_reading_gets_an_error_saying_why(work: Path) -> None:
    daemon = start_daemon(work / "late.sock", "--max-client-buffer-kib", "256", "--client-timeout", "2",
                          "--warm-seconds", "0")
    config = config_for(write_many(work / "late.nix", 40000))
    with daemon.raw() as late:
        late.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config}})
        _poll(lambda: "ending its stream" in daemon.log, timeout=120, what="the stream to be ended")
        answer = late.read_response()  # reading again: the events sent so far, then why they stopped
        assert answer["id"] == 1 and answer["error"]["code"] == rpc.SlowClientError.CODE
        assert "read none of its events for 2 s" in answer["error"]["message"]
        late.send_json({"jsonrpc": "2.0", "id": 2, "method": "status"})
        assert late.read_response()["result"]["eventStreams"]["streams"] == 0  # the connection goes on
    with daemon.raw() as gone:
        gone.send_json({"jsonrpc": "2.0", "id": 1, "method": "eval", "params": {"config": config}})
        _poll(lambda: "client gone (it read nothing for 4 s)" in daemon.log, timeout=120,
              what="a client that never reads to be disconnected")
        data = gone.reader.read()  # what was in flight, then the end
        assert not data.endswith(b"\n") or orjson.loads(data.splitlines()[-1])["method"] == "events"
    assert daemon.stop() == 0
