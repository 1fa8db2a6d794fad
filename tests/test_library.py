"""The library API: Session.open / stream / query_snapshot / diff_once, and the embedder entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from evix_helpers import FIXTURES, REPO
from evixd.engine import InputError, Session, SessionError
from protocol.config import EvalConfig
from protocol.events import Attrset, Derivation, Error
from protocol.query import Filter

MK = 'mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };'


def _write(path: Path, body: str) -> None:
    path.write_text(f"let {MK} in {{ {body} }}")


async def test_stream_query_and_diff(tmp_path: Path):
    f = tmp_path / "jobs.nix"
    _write(f, 'a = mk "a"; b = mk "b"; s = { recurseForDerivations = true; c = mk "c"; }; bad = throw "no";')
    session = await Session.open(EvalConfig(file=str(f), workers=2))
    with pytest.raises(SessionError):
        await session.query_snapshot()
    events = []
    async with session.stream() as stream:
        async for event in stream:
            events.append(event)
    kinds = {type(e) for e in events}
    assert kinds == {Derivation, Attrset, Error}
    assert {e.attr for e in events if isinstance(e, Derivation)} == {"a", "b", "s.c"}
    assert [e.attr for e in events if isinstance(e, Error)] == ["bad"]
    with pytest.raises(SessionError):
        session.stream()

    assert [d.attr for d in await session.query_snapshot()] == ["a", "b", "s.c"]
    assert [d.attr for d in await session.query_snapshot(Filter(attr_prefix=("s",)))] == ["s.c"]
    assert [d.attr for d in await session.query_snapshot(Filter(names=("b",)))] == ["b"]
    assert await session.query_snapshot(Filter(systems=("aarch64-linux",))) == []
    old_a = next(d for d in await session.query_snapshot() if d.attr == "a").drv_path

    _write(f, 'a = mk "a2"; s = { recurseForDerivations = true; c = mk "c"; }; d = mk "d";')
    diff = (await session.diff_once()).to_json()
    assert [x["attr"] for x in diff["added"]] == ["d"]
    assert [x["attr"] for x in diff["removed"]] == ["b"]
    assert [(x["attr"], x["oldDrvPath"]) for x in diff["changed"]] == [("a", old_a)]
    assert diff["errors"] == []
    assert [d.attr for d in await session.query_snapshot()] == ["a", "d", "s.c"]


async def test_stream_of_an_input_that_cannot_load_raises_input_error_as_evaluate_does(tmp_path: Path):
    bad = tmp_path / "bad.nix"
    bad.write_text("{ this is not nix")
    with pytest.raises(InputError) as evaluated:
        await (await Session.open(EvalConfig(file=str(bad)))).evaluate()
    session = await Session.open(EvalConfig(file=str(bad), workers=2))
    with pytest.raises(InputError) as streamed:  # plain, not an ExceptionGroup around it
        async with session.stream() as events:
            async for _ in events:
                pass
    assert str(streamed.value) == str(evaluated.value) and "bad.nix" in str(streamed.value)
    assert session.graph is None


async def test_a_stream_left_early_stops_its_evaluation_and_workers(tmp_path: Path):
    f = tmp_path / "many.nix"
    f.write_text(f"let {MK} in builtins.listToAttrs (builtins.genList (i: {{ name = \"d${{toString i}}\"; "
                 "value = mk \"p${toString i}\"; }) 200000)")
    session = await Session.open(EvalConfig(file=str(f), workers=2))
    async with session.stream() as events:
        async for _ in events:
            break  # the first event: the evaluation is under way
        workers = _worker_processes()
        assert workers, "no worker was running during the stream"
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert session.graph is None  # stopped, not run to the end


def _worker_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "evix_worker" in " ".join(p.cmdline())]


async def test_session_key_ignores_how_but_not_what():
    a = await Session.open(EvalConfig(file=str(FIXTURES / "jobs.nix"), workers=1, max_memory_mb=100))
    b = await Session.open(EvalConfig(file=str(FIXTURES / "jobs.nix"), workers=4, item_timeout=3))
    c = await Session.open(EvalConfig(file=str(FIXTURES / "jobs.nix"), meta=True))
    assert a.key == b.key != c.key


def test_embedder_hosts_its_own_workers():
    out = subprocess.run(
        [sys.executable, str(FIXTURES / "embedder.py"), str(FIXTURES / "jobs.nix")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 0, out.stderr
    derivations, started, hosted = map(int, out.stdout.split())
    assert derivations >= 10 and started == 2
    # the one process started (the template both workers were forked from) was the embedder
    # itself: its worker_command was used
    assert hosted == 1


async def test_workers_over_max_memory_are_recycled_without_losing_events():
    normal = await Session.open(EvalConfig(file=str(FIXTURES / "jobs.nix")))
    await normal.evaluate()
    tiny = await Session.open(EvalConfig(file=str(FIXTURES / "jobs.nix"), max_memory_mb=1, workers=2))
    summary = await tiny.evaluate()
    assert summary.recycled >= 5 and summary.workers_started > 5
    assert summary.errors == normal.last_summary.errors == 0
    assert {a: r.drv_path for a, r in tiny.graph.derivations.items()} == {
        a: r.drv_path for a, r in normal.graph.derivations.items()
    }


async def test_the_config_not_the_environment_decides_nix_path(tmp_path: Path, monkeypatch):
    (tmp_path / "lib.nix").write_text('derivation { name = "found"; system = "x"; builder = "/bin/sh"; }')
    monkeypatch.setenv("NIX_PATH", f"mine={tmp_path}")  # what a daemon's workers would inherit
    expr = "{ a = import <mine/lib.nix>; }"
    with_path = await Session.open(EvalConfig(expr=expr, nix_path=f"mine={tmp_path}"))
    await with_path.evaluate()
    assert list(with_path.graph.derivations) == ["a"]
    without = await Session.open(EvalConfig(expr=expr))
    await without.evaluate()
    assert "mine/lib.nix" in without.graph.errors["a"] and not without.graph.derivations


@pytest.mark.parametrize("mode", ["garbage", "truncate"])
async def test_a_bad_worker_frame_is_that_workers_death(tmp_path: Path, mode: str):
    f = tmp_path / "flat.nix"
    _write(f, " ".join(f'p{i} = mk "p{i}";' for i in range(40)))
    normal = await Session.open(EvalConfig(file=str(f)))
    await normal.evaluate()
    proxy = (sys.executable, str(FIXTURES / "faulty_worker.py"), mode, str(tmp_path / "spoiled"))
    # spawned workers: the proxy stands between the master and each of them
    faulty = await Session.open(EvalConfig(file=str(f), worker_command=proxy, fork_workers=False))
    summary = await faulty.evaluate()
    assert (tmp_path / "spoiled").exists()  # the proxy did spoil an answer
    assert summary.worker_deaths == 1 and summary.workers_started == 2
    lost = set(normal.graph.derivations) - set(faulty.graph.derivations)
    assert lost == set(faulty.graph.errors)  # at most the item in flight, as an error event
    assert len(lost) <= 1
    assert all(faulty.graph.derivations[a].drv_path == r.drv_path for a, r in normal.graph.derivations.items()
               if a not in lost)
