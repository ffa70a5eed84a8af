"""A run's documents, each validated against its versioned JSON Schema on write and on read.

``measurements`` and ``verdict`` are whole JSON documents written atomically; ``scores`` and
``corrections`` are append-only JSON Lines, one validated record per line, fsynced the moment it
is given so that a killed process loses no answer already taken.

A record is complete when its line ends with a newline. A process killed in the middle of a
write leaves a torn tail (bytes after the last newline): readers skip it, and the next append
sets it aside in ``<name>.torn.jsonl`` with a note, cuts it off, then writes, so the log stays
readable and every later answer still lands. Appends hold an exclusive ``flock`` on the log, so
the listening server and a command line can write the same file.

Each kind has a pydantic model (:mod:`bench_py.documents.models`) and the JSON Schema generated
from it (:mod:`bench_py.documents.schemas`). A file is checked against the schema (whose errors
name the field) and then parsed into its model: readers take ``load_measurements``,
``load_verdict``, ``load_corrections`` and ``load_scores``, and hand a plain dict onward (to a
template, to JSON) with :func:`dump`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import jsonschema
from pydantic import BaseModel, ValidationError

from bench_py.documents.models import VERSION, Correction, Measurements, ScoreRecord, Verdict
from bench_py.files import atomic_write_json

__all__ = [
    "DOCUMENTS",
    "FILE_NAMES",
    "KINDS",
    "LOGS",
    "OUTPUTS",
    "VERSION",
    "Correction",
    "Measurements",
    "RunFileError",
    "ScoreRecord",
    "Verdict",
    "append",
    "complete_bytes",
    "dump",
    "iter_records",
    "iter_records_at",
    "iter_scores_at",
    "load_corrections",
    "load_measurements",
    "load_scores",
    "load_verdict",
    "locked",
    "measurements_from",
    "read",
    "read_records",
    "schema",
    "torn_path",
    "validate",
    "write",
]

Model = TypeVar("Model", bound=BaseModel)
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
    """The JSON Schema of a kind: generated from its model for the current version (the files in
    ``bench_py/schemas/`` are the same, published); an older version's as it was published."""
    if kind not in KINDS + OUTPUTS:
        raise RunFileError(f"unknown schema {kind!r}; known: {', '.join(KINDS + OUTPUTS)}")
    if version == VERSION:
        from bench_py.documents.schemas import generate

        return generate(kind)
    text = resources.files("bench_py").joinpath(f"schemas/{kind}.{version}.json").read_text()
    return cast(dict[str, Any], json.loads(text))


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


#: (kind, SHA-256 of the bytes) of the files this process has read and found valid, newest last.
_VALID_READS: OrderedDict[tuple[str, str], None] = OrderedDict()
_VALID_READS_LOCK = threading.Lock()  # the listening server reads on several threads


def read(kind: str, path: Path) -> dict[str, Any]:
    """A run file, validated. A collection reads one run's measurements half a dozen times (seal,
    proxies, report, facts), and a long run's schema check costs ~100x the parse: the same bytes
    are checked once per process."""
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as error:
        raise RunFileError(f"{kind} {path}: not JSON ({error.msg} at line {error.lineno})") from None
    seen = (kind, hashlib.sha256(raw).hexdigest())
    with _VALID_READS_LOCK:
        known = seen in _VALID_READS
        if known:
            _VALID_READS.move_to_end(seen)
    if not known:
        validate(kind, data)
        with _VALID_READS_LOCK:
            _VALID_READS[seen] = None
            while len(_VALID_READS) > 64:
                _VALID_READS.popitem(last=False)
    return cast(dict[str, Any], data)  # every schema's top level is an object


def _model(kind: str, model: type[Model], data: Any, where: str = "") -> Model:
    """Data the schema accepted, as its model. The model says what the schema says, so this fails
    only when they disagree; the message then names the field as :func:`validate` does."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = "/".join(str(p) for p in first["loc"]) or "(top level)"
        raise RunFileError(f"{kind}{where} {field}: {first['msg']}") from None


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as the plain JSON object it was read from (keys it did not carry stay absent): what
    a reader hands to a template or writes out as JSON."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def measurements_from(data: Any) -> Measurements:
    """A measurements document already in memory, validated, as its model."""
    validate("measurements", data)
    return _model("measurements", Measurements, data)


def load_measurements(path: Path) -> Measurements:
    """``measurements.json``, validated, as its model."""
    return _model("measurements", Measurements, read("measurements", path))


def load_verdict(path: Path) -> Verdict:
    """``verdict.json``, validated, as its model."""
    return _model("verdict", Verdict, read("verdict", path))


#: Tests only: seconds to pause between the two halves of a line, so that a test can kill the
#: writer at a moment it knows (the first half is on disk, the newline is not).
TEST_PAUSE_ENV = "VOXBENCH_TEST_PAUSE_MID_APPEND_S"

_held: dict[str, int] = {}  # logs this process holds locked -> the locked descriptor


def torn_path(path: Path) -> Path:
    """Where the torn tails of ``scores.jsonl`` go: ``scores.torn.jsonl`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.torn{path.suffix}")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[int]:
    """Hold the log exclusively (``flock``) for a check-then-append; re-entrant in one process.
    Yields a read-write descriptor of the file (created when missing)."""
    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        yield _held[key]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = fd
        try:
            yield fd
        finally:
            del _held[key]
    finally:
        os.close(fd)  # closing releases the lock


def _set_aside_torn_tail(path: Path, fd: int) -> int | None:
    """Cut off bytes after the last newline (a write that never finished), after copying them
    with a note to the torn file. Returns where the tail began, or None when there was none."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None  # the usual case: the last record is complete
    data = os.pread(fd, size, 0)
    start = data.rfind(b"\n") + 1
    if start == size:
        return None
    note = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "file": Path(path).name,
        "offset": start,
        "length": size - start,
        "text": data[start:].decode("utf-8", "replace"),
        "note": "an unfinished write (the writing process stopped mid-line, before the answer was "
        "acknowledged) was set aside here before the next append",
    }
    aside = os.open(torn_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(aside, (json.dumps(note, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(aside)
    finally:
        os.close(aside)
    os.ftruncate(fd, start)
    os.fsync(fd)
    return start


def _write_line(fd: int, line: bytes) -> None:
    pause = os.environ.get(TEST_PAUSE_ENV)
    end = os.fstat(fd).st_size
    if pause:
        half = len(line) // 2
        os.pwrite(fd, line[:half], end)
        os.fsync(fd)
        time.sleep(float(pause))
        os.pwrite(fd, line[half:], end + half)
    else:
        os.pwrite(fd, line, end)
    os.fsync(fd)


def append(kind: str, path: Path, record: dict[str, Any]) -> None:
    """Append one validated record as a line; durable when this returns. A torn tail left by a
    writer that was killed is set aside first (see the module's docstring)."""
    if kind not in LOGS:
        raise RunFileError(f"{kind} is a whole document: use write()")
    validate(kind, record)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    with locked(Path(path)) as fd:
        _set_aside_torn_tail(Path(path), fd)
        _write_line(fd, line)


def complete_bytes(path: Path) -> bytes:
    """The log's complete lines (a torn tail left out): what a seal over the log hashes."""
    path = Path(path)
    if not path.exists():
        return b""
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1]


def iter_records_at(kind: str, path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Each valid record with the byte offsets of its line ``(start, end)``. A torn last line (a
    crash mid-write) is skipped, not fatal; a bad line elsewhere is an error naming its number."""
    data = complete_bytes(path)
    offset = 0
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "not UTF-8"
            raise RunFileError(f"{kind} line {number}: not JSON ({reason})") from None
        validate(kind, record, f" line {number}")
        yield start, offset, record


def iter_records(kind: str, path: Path) -> Iterator[dict[str, Any]]:
    """Each valid record in order (see :func:`iter_records_at`)."""
    for _, _, record in iter_records_at(kind, path):
        yield record


def read_records(kind: str, path: Path) -> list[dict[str, Any]]:
    return list(iter_records(kind, path))


def iter_scores_at(path: Path) -> Iterator[tuple[int, int, ScoreRecord]]:
    """Each valid record of ``scores.jsonl`` as its model, with its line's byte offsets (see
    :func:`iter_records_at`)."""
    for start, end, record in iter_records_at("scores", path):
        yield start, end, _model("scores", ScoreRecord, record)


def load_scores(path: Path) -> list[ScoreRecord]:
    """Every valid record of ``scores.jsonl`` (a torn last line skipped), as models."""
    return [record for _, _, record in iter_scores_at(path)]


def load_corrections(path: Path) -> list[Correction]:
    """Every entry of ``corrections.jsonl`` (none when the file is absent), as models."""
    return [_model("corrections", Correction, record) for record in iter_records("corrections", path)]
