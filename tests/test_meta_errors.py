"""`--meta` that fails is seen (issue 15): evix's events keep the derivation and add
`metaError`; `evix query --meta-error` finds them. Real Nix on tests/fixtures/meta_errors.nix."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import orjson
import pytest
from daemon_fixtures import reap_daemons  # noqa: F401 (autouse: stops leftover daemons)
from daemon_fixtures import Daemon, daemon_fixture, short_dir
from evix_helpers import FIXTURES, eval_locally, nix_drv_paths
from evix_helpers import run_evix as run_cli
from nix_helpers import error_lines, nix_eval_error

from evixd.engine.graph import Graph
from evixd.engine.query_index import QueryIndex
from protocol.query import Filter

META = FIXTURES / "meta_errors.nix"
NAMES = {"missingMaintainer": "missing-maintainer", "throwingDescription": "throwing-description",
         "functionInMeta": "function-in-meta", "fineMeta": "fine-meta"}


@pytest.fixture(scope="module")
def meta_run():
    run = eval_locally("--file", str(META), "--meta")
    assert run.code == 0, run.stderr
    return run


def _nix_error(selector: str) -> str:
    """The line stating the error, as nix-instantiate reports evaluating `selector` strictly."""
    return error_lines(nix_eval_error(f"builtins.deepSeq ((import {META}).{selector}) null"))[-1]


def test_each_derivation_is_printed_with_the_meta_that_evaluates(meta_run):
    drvs = meta_run.derivations()
    truth = nix_drv_paths(f"import {META}", [[a] for a in NAMES])
    for attr, name in NAMES.items():
        event = drvs[attr]
        assert event["drvPath"] == truth[attr] and event["name"] == name
    assert drvs["missingMaintainer"]["meta"] == {
        "description": "a maintainer is gone", "maintainers": [{"email": "alice@example.org", "name": "Alice"}]}
    assert drvs["throwingDescription"]["meta"] == {"license": {"shortName": "mit"}}
    assert drvs["functionInMeta"]["meta"] == {"description": "has a function", "platforms": ["x86_64-linux"]}
    assert drvs["fineMeta"]["meta"] == {"description": "all fine", "homepage": "https://example.org",
                                        "maintainers": [{"email": "alice@example.org", "name": "Alice"}]}


def test_meta_error_names_the_path_inside_meta_and_nixs_message(meta_run):
    drvs = meta_run.derivations()
    missing = drvs["missingMaintainer"]["metaError"]
    assert set(missing) == {"path", "message"} and missing["path"] == "maintainers.0"
    assert _nix_error("missingMaintainer.meta.maintainers") == "error: attribute 'GaetanLepage' missing"
    assert missing["message"].startswith("error: attribute 'GaetanLepage' missing\n")
    assert "meta_errors.nix:15:" in missing["message"]
    throwing = drvs["throwingDescription"]["metaError"]
    assert throwing["path"] == "description"
    assert _nix_error("throwingDescription.meta.description") == "error: no description for you"
    assert throwing["message"].endswith("error: no description for you")


def test_functions_and_fine_meta_are_not_errors(meta_run):
    drvs = meta_run.derivations()
    assert "metaError" not in drvs["functionInMeta"] and "metaError" not in drvs["fineMeta"]
    assert not meta_run.errors()


def test_without_meta_there_is_no_meta_error():
    run = eval_locally("--file", str(META))
    assert run.code == 0, run.stderr
    assert not any("meta" in e or "metaError" in e for e in run.derivations().values())


def test_the_graph_filters_on_meta_errors(meta_run):
    graph = Graph()
    graph.add_lines(b"".join(orjson.dumps(e) + b"\n" for e in meta_run.events))
    broken = [d.attr for d in graph.query(Filter(meta_error=True))]
    assert broken == ["missingMaintainer", "throwingDescription"]
    assert [d.attr for d in graph.query(Filter(meta_error=False))] == ["fineMeta", "functionInMeta"]
    index = QueryIndex(graph)
    assert [index.records[i].attr for i in index.select(Filter(meta_error=True, names=("fine-meta",)))] == []
    assert [index.records[i].attr for i in index.select(Filter(meta_error=True))] == broken
    assert Filter.from_json(Filter(meta_error=True).to_json()) == Filter(meta_error=True)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    yield from daemon_fixture("--max-warm-workers", "1")


def test_evix_query_meta_error_through_the_daemon(daemon: Daemon) -> None:
    work = short_dir()
    try:
        shutil.copy(META, work / "meta.nix")
        assert run_cli("eval", "--file", "meta.nix", "--meta", cwd=work, socket_path=daemon.socket).code == 0
        broken = run_cli("query", "--file", "meta.nix", "--meta", "--meta-error", cwd=work, socket_path=daemon.socket)
        assert broken.code == 0, broken.stderr
        lines = [orjson.loads(x) for x in broken.stdout.splitlines()]
        assert [(x["attr"], x["metaError"]["path"]) for x in lines] == [
            ("missingMaintainer", "maintainers.0"), ("throwingDescription", "description")]
        fine = run_cli("query", "--file", "meta.nix", "--meta", "--no-meta-error", cwd=work, socket_path=daemon.socket)
        assert [orjson.loads(x)["attr"] for x in fine.stdout.splitlines()] == ["fineMeta", "functionInMeta"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
