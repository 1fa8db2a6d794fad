"""Memory limits cost retries, never derivations: an item whose worker passed the limit is
evaluated again alone in a fresh worker; only one that passes it there too is an error."""

from __future__ import annotations

from pathlib import Path

from evixd.engine import Session
from protocol.config import EvalConfig

# Each item keeps ~25 MiB alive (its list stays reachable from the root) and works ROUNDS
# passes over it after allocating it (without allocating more), so a worker that evaluated a
# few items passes 150 MiB in the middle of the next one, while any one item alone stays well
# below. The work must outlast the watchdog's look (every 0.2 s): 60 passes over 200,000
# elements took about 0.2 s, and a worker now and then passed the limit unseen and was only
# recycled after the item, with no retry to show.
HEAVY = """
let
  mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };
  big = i: builtins.genList (j: { a = j; b = i; }) SIZE;
  held = builtins.listToAttrs (map (i: { name = "h${toString i}"; value = big i; }) (builtins.genList (x: x) N));
  slow = l: builtins.foldl' (acc: k: acc + (if builtins.elem k l then 1 else 0)) 0 (builtins.genList (x: x) ROUNDS);
in builtins.listToAttrs (map (i: { name = "p${toString i}";
  value = mk "p${toString i}-${toString (slow held."h${toString i}")}"; }) (builtins.genList (x: x) N))
"""


async def _evaluate(path: Path, **how) -> Session:
    session = await Session.open(EvalConfig(file=str(path), **how))
    await session.evaluate()
    return session


def _drvs(session: Session) -> dict[str, str]:
    return {a: r.drv_path for a, r in session.graph.derivations.items()}


async def test_a_low_memory_limit_loses_no_derivation(tmp_path: Path):
    f = tmp_path / "heavy.nix"
    f.write_text(HEAVY.replace("ROUNDS", "250").replace("SIZE", "200000").replace("N", "8"))
    unlimited = await _evaluate(f)
    assert len(_drvs(unlimited)) == 8
    limited = await _evaluate(f, max_memory_mb=150)  # one worker: it must pass the limit
    assert limited.last_summary.memory_retries >= 1  # the limit killed workers in the middle of items
    assert _drvs(limited) == _drvs(unlimited) and not limited.graph.errors


async def test_an_item_over_the_limit_alone_is_an_error_saying_so(tmp_path: Path):
    f = tmp_path / "one.nix"
    # one item needs ~300 MiB by itself; its neighbour is small
    f.write_text(HEAVY.replace("ROUNDS", "60").replace("SIZE", "3000000").replace("N", "1")[:-1]
                 + ' // { small = mk "small"; }\n')
    limited = await _evaluate(f, max_memory_mb=150)
    assert set(limited.graph.derivations) == {"small"}
    error = limited.graph.errors["p0"]
    assert "memory limit of 150 MiB" in error and "alone in a fresh worker" in error
    assert limited.last_summary.memory_retries == 1
