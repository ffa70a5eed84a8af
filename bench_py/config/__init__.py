"""Configuration: defaults shipped with voxbench."""

from __future__ import annotations

from importlib import resources


def default_utterances() -> list[str]:
    """The ten default utterances (comments and blank lines skipped)."""
    text = resources.files("bench_py.config").joinpath("utterances.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
