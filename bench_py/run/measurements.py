"""The measurements file: validated against its versioned JSON Schema on write and on read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_py import documents

SCHEMA_VERSION = documents.VERSION
MeasurementsError = documents.RunFileError


def schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    return documents.schema("measurements", version)


def validate(data: dict[str, Any]) -> None:
    documents.validate("measurements", data)


def write_measurements(path: Path, data: dict[str, Any]) -> None:
    documents.write("measurements", path, data)


def read_measurements(path: Path) -> dict[str, Any]:
    return documents.read("measurements", path)
