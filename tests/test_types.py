"""The type gate: mypy, strict on bench_py, as pyproject.toml's [tool.mypy] configures it."""

import subprocess
import sys

from tests.helpers import ROOT


def test_mypy_strict_passes():
    # No skip when mypy is missing: `python -m mypy` then fails with "No module named mypy", and so does this test.
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
