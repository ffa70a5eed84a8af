"""The measurements file: validated against its versioned JSON Schema on write and on read."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from bench_py.run.state import atomic_write_json

SCHEMA_VERSION = "v0"


class MeasurementsError(ValueError):
    """The measurements do not match their schema; the message names the first bad field."""


@lru_cache(maxsize=4)
def schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    text = resources.files("bench_py.run").joinpath(f"schemas/measurements.{version}.json").read_text()
    return json.loads(text)


def validate(data: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise MeasurementsError(f"measurements {where}: {error.message}")


def write_measurements(path: Path, data: dict[str, Any]) -> None:
    validate(data)
    atomic_write_json(path, data)


def read_measurements(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    validate(data)
    return data
