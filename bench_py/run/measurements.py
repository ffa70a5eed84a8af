"""The measurements file: validated against its versioned JSON Schema on write and on read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_py.run import files

SCHEMA_VERSION = files.VERSION
MeasurementsError = files.RunFileError


def schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    return files.schema("measurements", version)


def validate(data: dict[str, Any]) -> None:
    files.validate("measurements", data)


def write_measurements(path: Path, data: dict[str, Any]) -> None:
    files.write("measurements", path, data)


def read_measurements(path: Path) -> dict[str, Any]:
    return files.read("measurements", path)
