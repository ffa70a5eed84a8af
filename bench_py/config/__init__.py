"""Configuration: defaults shipped with voxbench."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any


def default_utterances() -> list[str]:
    """The ten default utterances (comments and blank lines skipped)."""
    text = resources.files("bench_py.config").joinpath("utterances.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def embedded_overrides(project_dir: Path | None = None) -> dict[str, Any]:
    """The embedded default's configuration overrides: ``voxbench_inventory_config`` of
    ``inventory/local`` (the stand-ins, this machine's ports), for code that runs it without Ansible."""
    import yaml

    root = project_dir or Path(__file__).resolve().parents[2]
    path = root / "inventory" / "local" / "group_vars" / "all.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    overrides = data.get("voxbench_inventory_config")
    if not isinstance(overrides, dict):
        raise ValueError(f"{path} has no voxbench_inventory_config mapping")
    return overrides
