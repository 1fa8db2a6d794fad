"""docs/failures.md lists every failure a user can meet: each row must name tests, and each
named test must exist (so the table cannot claim a check that is not there)."""

from __future__ import annotations

import ast
import re

from evix_helpers import REPO

TABLE = REPO / "docs" / "failures.md"
TEST_REF = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def _rows() -> list[str]:
    """The failure rows: table lines under a "what happens" header."""
    rows, in_table = [], False
    for line in TABLE.read_text().splitlines():
        if line.startswith("| what happens"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("| ---"):
            rows.append(line)
    return rows


def _tests_in(file: str) -> set[str]:
    tree = ast.parse((REPO / "tests" / file).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_failure_row_names_tests_that_exist() -> None:
    rows = _rows()
    assert len(rows) > 20
    for row in rows:
        refs = TEST_REF.findall(row)
        assert refs, f"no test named for: {row[:80]}"
        for file, name in refs:
            assert name in _tests_in(file), f"{file}::{name} does not exist ({row[:60]})"


def test_every_exit_status_the_cli_uses_is_in_the_table() -> None:
    text = TABLE.read_text()
    for status in ("| 0 |", "| 1 |", "| 2 |", "| 75 |", "| 141 |", "| 128 + N |"):
        assert status in text
