"""A run's files, each validated against its versioned JSON Schema on write and on read.

``measurements`` and ``verdict`` are whole JSON documents written atomically; ``scores`` and
``corrections`` are append-only JSON Lines, one validated record per line, flushed and fsynced
the moment they are given so that a killed process loses no answer already taken.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from bench_py.run.state import atomic_write_json

VERSION = "v0"
DOCUMENTS = ("measurements", "verdict")
LOGS = ("scores", "corrections")
KINDS = DOCUMENTS + LOGS
FILE_NAMES = {
    "measurements": "measurements.json",
    "verdict": "verdict.json",
    "scores": "scores.jsonl",
    "corrections": "corrections.jsonl",
}


class RunFileError(ValueError):
    """A run file does not match its schema or cannot be parsed; the message names the field."""


OUTPUTS = ("cli-bench", "cli-status")  # the CLI's --json outputs


@lru_cache(maxsize=16)
def schema(kind: str, version: str = VERSION) -> dict[str, Any]:
    if kind not in KINDS + OUTPUTS:
        raise RunFileError(f"unknown schema {kind!r}; known: {', '.join(KINDS + OUTPUTS)}")
    text = resources.files("bench_py.run").joinpath(f"schemas/{kind}.{version}.json").read_text()
    return json.loads(text)


@lru_cache(maxsize=16)
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(kind))


def validate(kind: str, data: Any, where: str = "") -> None:
    """Raise :class:`RunFileError` naming the first bad field (``scores line 3 /score: ...``)."""
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(data))
    if error is None:
        return
    field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            field = "/".join([*(str(p) for p in error.absolute_path), missing[0]])
    raise RunFileError(f"{kind}{where} {field}: {error.message}")


def write(kind: str, path: Path, data: dict[str, Any]) -> None:
    if kind not in DOCUMENTS:
        raise RunFileError(f"{kind} is append-only: use append()")
    validate(kind, data)
    atomic_write_json(Path(path), data)


def read(kind: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunFileError(f"{kind} {path}: not JSON ({error.msg} at line {error.lineno})") from None
    validate(kind, data)
    return data


def append(kind: str, path: Path, record: dict[str, Any]) -> None:
    """Append one validated record as a line; durable when this returns."""
    if kind not in LOGS:
        raise RunFileError(f"{kind} is a whole document: use write()")
    validate(kind, record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_records(kind: str, path: Path) -> Iterator[dict[str, Any]]:
    """Each valid record in order. A torn last line (a crash mid-write) is skipped, not fatal;
    a bad line elsewhere is an error naming its number."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").split("\n")
    complete = lines[:-1]  # the text after the last newline is an unfinished write, if anything
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunFileError(f"{kind} line {number}: not JSON ({error.msg})") from None
        validate(kind, record, f" line {number}")
        yield record


def read_records(kind: str, path: Path) -> list[dict[str, Any]]:
    return list(iter_records(kind, path))
