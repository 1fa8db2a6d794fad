"""--max-memory counts a worker's own memory: a fork is not charged for the pages it shares
with its template (the loaded input, a warmed stdenv), and warming changes no event."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import orjson
import pytest
import trio

from evix_helpers import eval_locally, nix_bin
from evixd.engine import Session
from evixd.engine.local_worker import SpawnedWorkers
from evixd.engine.template import ForkedWorkers
from protocol.config import EvalConfig
from protocol.own_memory import read_uss

FIXTURES = Path(__file__).parent / "fixtures"
LIMIT_MB = 150

# `n` forces `big`, a list that takes ~240 MiB (2x: ~110 MiB). The big input forces it while
# loading, so the template holds it and every fork starts with it in its RSS; the other one
# forces it in its first derivation, the one a warming template evaluates. The 300 packages
# after it need little each.
def _let(elements: int) -> str:
    return (f'let mk = name: derivation {{ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; }};'
            f" big = builtins.genList (j: {{ a = j; }}) {elements}; n = builtins.foldl' (acc: x: acc + x.a) 0 big;")


PACKAGES = 'builtins.listToAttrs (builtins.genList (i: { name = "p${toString i}"; value = mk "p${toString i}"; }) 300)'
BIG_INPUT = f"{_let(1500000)} in builtins.seq n ({PACKAGES})"
BIG_FIRST = f'{_let(700000)} in {{ a0 = mk "a0-${{toString n}}"; }} // {PACKAGES}'


def _peak_rss_mib(let: str) -> float:
    """The peak RSS of a plain nix-instantiate forcing `n` (os.wait4)."""
    proc = subprocess.Popen([nix_bin("nix-instantiate"), "--eval", "-E", f"{let} in n"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


async def _run(path: Path, **how) -> Session:
    session = await Session.open(EvalConfig(file=str(path), max_memory_mb=LIMIT_MB, **how))
    await session.evaluate()
    return session


async def test_a_fork_is_not_charged_for_the_input_its_template_loaded(tmp_path: Path):
    f = tmp_path / "big-input.nix"
    f.write_text(BIG_INPUT)
    assert _peak_rss_mib(_let(1500000)) > LIMIT_MB + 50  # a process holding the input is far over the limit
    session = await _run(f)
    s = session.last_summary
    assert len(session.graph.derivations) == 300 and not session.graph.errors
    # charged by RSS, every fork would start over the limit and be recycled after one item
    assert (s.workers_started, s.recycled, s.worker_deaths) == (1, 0, 0)


async def test_forks_of_a_warmed_template_are_not_charged_for_what_it_warmed(tmp_path: Path, caplog):
    f = tmp_path / "big-first.nix"
    f.write_text(BIG_FIRST)
    assert _peak_rss_mib(_let(700000)) > LIMIT_MB  # one process holding what a0 needs is over the limit
    with caplog.at_level(logging.INFO, logger="evix.template"):
        warmed = await _run(f, workers=2)
    assert not [r for r in caplog.records if "does not warm" in r.getMessage()]  # it did warm
    s = warmed.last_summary
    assert (s.recycled, s.worker_deaths) == (0, 0) and s.workers_started == 2
    cold = await _run(f, workers=2, warm_template=False)
    assert len(warmed.graph.derivations) == 301
    assert {a: r.drv_path for a, r in warmed.graph.derivations.items()} == \
        {a: r.drv_path for a, r in cold.graph.derivations.items()}


@pytest.mark.parametrize("fixture", ["jobs.nix", "broken.nix", "cycles.nix", "functions.nix", "meta_errors.nix",
                                     "eval_jobs/jobs.nix", "eval_jobs/aggregates.nix"])
def test_warming_changes_no_event(fixture: str):
    path = str(FIXTURES / fixture)
    runs = [eval_locally("--file", path, "--workers", "2", "--meta", warm, timeout=300)
            for warm in ("--warm-template", "--no-warm-template")]
    assert runs[0].code == runs[1].code
    assert runs[0].events, runs[0].stderr
    assert sorted(runs[0].stdout.splitlines()) == sorted(runs[1].stdout.splitlines())


async def _fork_evaluating(config: EvalConfig, attr: str, warm: bool) -> tuple[int, bytes]:
    """(own memory in bytes, events) of a fresh fork that evaluated `attr` alone, after the
    template was asked to warm it or not."""
    async with trio.open_nursery() as nursery:
        source = ForkedWorkers(config, nursery, SpawnedWorkers(config, nursery))
        try:
            if warm:
                await source.warm((attr,))
            async with source.open(fresh=True) as worker:
                await worker.send_batch(1, orjson.dumps([[[], [attr]]]))
                result = await worker.receive_result(1)
                own = read_uss(worker.pid)
        finally:
            await source.aclose()
        nursery.cancel_scope.cancel()
    return own, result.events


async def test_a_heavy_item_the_template_warmed_costs_later_forks_nothing(tmp_path: Path):
    f = tmp_path / "heavy.nix"
    f.write_text(f'{_let(1500000)} in {{ a0 = mk "a0"; v0 = mk "v0-${{toString n}}"; }}')
    config = EvalConfig(file=str(f), max_memory_mb=1024).resolved().validate()
    cold, cold_events = await _fork_evaluating(config, "v0", warm=False)
    warmed, warm_events = await _fork_evaluating(config, "v0", warm=True)
    assert cold > 150 << 20  # evaluating v0 needs `big`
    assert warmed < 50 << 20  # the template evaluated it: the fork shares it
    assert warm_events == cold_events and b'"v0"' in warm_events


def test_warming_is_held_to_the_timeout(tmp_path: Path):
    f = tmp_path / "slow-first.nix"  # a0 takes a second or more; b is instant
    f.write_text('let mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };'
                 ' slow = builtins.length (builtins.filter (x: x == 1) (builtins.genList (x: x) 6000000));'
                 ' in { a0 = mk "a0-${toString slow}"; b = mk "b"; }')
    runs = [eval_locally("--file", str(f), "--timeout", "0.3", warm, timeout=300)
            for warm in ("--warm-template", "--no-warm-template")]
    assert "timed out" in runs[0].errors()["a0"]["error"]  # not evaluated by the template instead
    assert set(runs[0].derivations()) == {"b"}
    assert sorted(runs[0].stdout.splitlines()) == sorted(runs[1].stdout.splitlines())


# `a0` is cheap and needs nothing shared (a bootstrap package, as nixpkgs' first one is);
# `b0` and every `p*` need `n`, the "stdenv" of everything after the first derivation.
SETTLE_SET = (f'{_let(1500000)} in {{ a0 = mk "a0"; b0 = mk "b0-${{toString n}}"; }} // builtins.listToAttrs '
              '(builtins.genList (i: { name = "p${toString i}"; value = mk "p${toString i}-${toString n}"; }) 20)')


async def test_a_replacement_fork_shares_what_the_template_settled(tmp_path: Path):
    """The first warming stops at the first derivation; the first fork that replaces a
    worker makes the template go on down the root's children (evix_worker/warming.py), so
    that fork, and every later one, shares the value they all need."""
    f = tmp_path / "settle.nix"
    f.write_text(SETTLE_SET)
    config = EvalConfig(file=str(f), max_memory_mb=1024, workers=1).resolved().validate()
    own: list[int] = []
    events: list[bytes] = []
    async with trio.open_nursery() as nursery:
        source = ForkedWorkers(config, nursery, SpawnedWorkers(config, nursery))
        try:
            for _ in range(2):  # the run's one worker, then its replacement
                async with source.open() as worker:
                    await worker.send_batch(1, orjson.dumps([[[], ["p5"]]]))
                    events.append((await worker.receive_result(1)).events)
                    own.append(read_uss(worker.pid))
        finally:
            await source.aclose()
        nursery.cancel_scope.cancel()
    assert own[0] > 150 << 20  # the first fork evaluated `n` itself
    assert own[1] < 50 << 20  # its replacement shares it: the template settled
    assert events[0] == events[1] and b'"p5"' in events[0]


def test_settling_stops_after_a_run_of_cheap_derivations_or_past_its_budget():
    from evix_worker.warming import SETTLED_RUN, _Budget
    budget = _Budget(EvalConfig(), first_cost=1.0)
    assert [budget.spent(0.001) for _ in range(SETTLED_RUN)] == [False] * (SETTLED_RUN - 1) + [True]
    budget = _Budget(EvalConfig(), first_cost=1.0)
    assert budget.spent(0.3) is False and budget.spent(0.001) is False and budget.spent(0.8) is True
    budget = _Budget(EvalConfig(item_timeout=0.5), first_cost=1.0)
    assert budget.spent(0.2) is False and budget.spent(0.1) is True  # half of --timeout
