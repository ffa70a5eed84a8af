"""docs/faults.md names the test that proves each row: every one of them must exist."""

from __future__ import annotations

import ast
import re

from tests.helpers import ROOT


def test_every_test_named_in_the_fault_table_exists():
    table = (ROOT / "docs" / "faults.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", table)
    assert len(named) >= 15
    for path, function in named:
        source = ROOT / path
        assert source.is_file(), path
        if function:
            tree = ast.parse(source.read_text())
            defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            assert function in defined, f"{path}::{function} is in docs/faults.md but not in the code"


def test_every_fault_of_the_matrix_has_its_row():
    """The faults the fault matrix names (1 to 16), each with a row and a test."""
    table = (ROOT / "docs" / "faults.md").read_text()
    rows = set(re.findall(r"^\| (\d+)[a-z]? \|", table, re.MULTILINE))
    assert rows == {str(n) for n in range(1, 17)}
    assert "Not yet injected" not in table
