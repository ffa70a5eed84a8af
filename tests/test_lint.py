"""Style gates the project holds itself to: ruff and ansible-lint's production profile."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

BIN = Path(sys.executable).parent


def test_ruff_is_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([str(BIN / "ruff"), *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile_passes():
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--profile", "production"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
