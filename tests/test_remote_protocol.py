"""The remote worker protocol's pieces that need no process: messages, endpoints, the token
check, the option allow-list, and the queue's system routing."""

from __future__ import annotations

import orjson
import pytest
import trio

from evixd.engine.work_queue import WorkQueue
from protocol import remote_wire as rw
from protocol import wire
from protocol.config import ConfigError, EvalConfig
from protocol.remote_setup import accept_master_config, config_for_remote, token_matches
from protocol.remotes import EndpointError, Remote, parse_systems, split_endpoint


@pytest.mark.parametrize("msg", [rw.Hello(1, "t", "/nix/store", b'{"expr":"{}"}', "ab" * 32, "/src/p"),
                                 wire.Work(7, b"[]"), rw.Reset(True), rw.Shutdown(), rw.SourceChunk(b"tar", False)])
def test_requests_round_trip(msg):
    assert rw.decode_request(rw.encode_request(msg)) == msg


@pytest.mark.parametrize("msg", [wire.Ready(1, "2.26.3", 42, "/nix/store"), rw.Refused("no"), rw.Fatal("cannot load"),
                                 rw.Died(3, None, "killed", True, False), rw.Died(3, 5, "segv"), rw.Alive(),
                                 rw.NeedSource(), wire.Result(2, b'{"a":1}\n', b"[]", 1, 1, 0, True, 9, "")])
def test_responses_round_trip(msg):
    assert rw.decode_response(rw.encode_response(msg)) == msg


def test_a_frame_over_the_cap_is_refused_from_its_header():
    parser = wire.FrameParser(rw.MAX_REMOTE_FRAME_BYTES)
    parser.feed(b"\0\0\0\0" + (rw.MAX_REMOTE_FRAME_BYTES // 8).to_bytes(4, "little"))
    with pytest.raises(wire.ProtocolError, match="exceeds the limit"):
        parser.next_frame()


def test_endpoints_and_systems():
    assert split_endpoint("builder-a:7357") == ("builder-a", 7357)
    assert split_endpoint("[::1]:7357") == ("::1", 7357)
    assert split_endpoint("0.0.0.0:0", listen=True) == ("0.0.0.0", 0)
    for bad in ("nohost", "::1:7357", "[nothex]:1", "h:0", "h:70000"):
        with pytest.raises(EndpointError):
            split_endpoint(bad)
    assert parse_systems("x86_64-linux, aarch64-linux") == ("x86_64-linux", "aarch64-linux")
    assert parse_systems("") == () and Remote("h:1").owns is None


def test_the_token_check():
    assert token_matches("secret", "secret")
    assert not token_matches("secret", "secreT") and not token_matches("secret", "")
    assert token_matches(None, "anything")  # a service run with --insecure-no-token


def test_a_master_config_is_checked_against_the_allow_list():
    ok = EvalConfig(expr="{}", options=(("extra-experimental-features", "flakes"), ("allowed-uris", "https://x")),
                    max_memory_mb=9000)
    assert accept_master_config(ok, 4096).max_memory_mb == 4096  # the service's limit wins
    for key in ("allow-unsafe-native-code-during-evaluation", "plugin-files", "builders", "extra-plugin-files",
                "substituters"):
        with pytest.raises(ConfigError, match=key):
            accept_master_config(EvalConfig(expr="{}", options=((key, "x"),)), 4096)
    with pytest.raises(ConfigError, match="worker command"):
        accept_master_config(EvalConfig(expr="{}", worker_command=("/bin/sh",)), 4096)


def test_what_a_master_sends_leaves_its_own_fields_out():
    config = EvalConfig(expr="{}", workers=0, remotes=(Remote("h:1", ("x86_64-linux",), 2),), remote_token="s3cret",
                        gc_roots_dir="/roots", worker_command=("w",))
    sent = orjson.dumps(config_for_remote(config).to_json())
    assert b"s3cret" not in sent and b"/roots" not in sent and b'"remotes":[]' in sent
    assert EvalConfig.from_json(orjson.loads(orjson.dumps(config.to_json()))) == config  # a daemon gets them all


def test_workers_zero_needs_a_remote():
    with pytest.raises(ConfigError, match="0 only with --remote"):
        EvalConfig(expr="{}", workers=0).validate()
    EvalConfig(expr="{}", workers=0, remotes=(Remote("h:1"),)).validate()


def test_a_rejected_derivation_waits_for_an_owner_and_is_routed_up_front():
    async def main() -> None:
        q = WorkQueue()
        q.routes.register(frozenset({"x86_64-linux"}))
        q.routes.register(frozenset({"aarch64-linux"}))
        q.put(("pkgs",), [f"p{i}" for i in range(20)])
        first = q.take_nowait(2, frozenset({"x86_64-linux"}))
        assert first is not None and len(first) == 4  # children of a set of unknown system: a probe
        assert q.learn(("pkgs",), "aarch64-linux")  # ... came back aarch64: the rest is routed
        q.reroute()
        assert q.reject(("pkgs",), "p0", "aarch64-linux")
        assert q.take_nowait(2, frozenset({"x86_64-linux"})) is None  # nothing for x86 any more
        taken = []
        while (arm := q.take_nowait(2, frozenset({"aarch64-linux"}))) is not None:
            taken += arm.items()
        assert sorted(name for _, name in taken) == sorted(f"p{i}" for i in [0, *range(4, 20)])
        assert q.reject(("pkgs",), "p1", "aarch64-linux")  # another probe came back rejected
        stuck = q.retire(frozenset({"aarch64-linux"}))  # its owner gone: the run cannot complete
        assert stuck is not None and stuck[1] == "aarch64-linux"

    trio.run(main)
