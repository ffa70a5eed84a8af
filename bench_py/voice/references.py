"""The references store: confirmed clips in a directory, allowed by ``metadata.json``.

Only a clip listed in the allowlist, whose bytes still hash to the recorded sha256, may be
used for cloning. Anything else is refused with the command that fixes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from bench_py.audio import read_wav_file
from bench_py.files import atomic_write_json

METADATA = "metadata.json"


class ReferenceError(ValueError):
    """A reference clip cannot be used; the message says what to do."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(directory: Path) -> dict[str, Any]:
    """The allowlist. A file the production TTS already reads may hold other keys: they are kept
    as they are, and voxbench's entries live under ``clips`` (added when missing)."""
    try:
        data = json.loads((directory / METADATA).read_text())
    except FileNotFoundError:
        return {"version": 1, "clips": {}}
    except json.JSONDecodeError as error:
        raise ReferenceError(f"{directory / METADATA} is not valid JSON ({error}); restore it from git") from None
    if not isinstance(data, dict):
        raise ReferenceError(f"{directory / METADATA} is not a JSON object; voxbench only merges into an object")
    clips = data.setdefault("clips", {})
    if not isinstance(clips, dict):
        raise ReferenceError(f"{directory / METADATA} has a 'clips' key that is not a mapping; rename it first")
    return data


def add_confirmed(
    directory: Path, name: str, clip: Path, source: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Copy ``clip`` into the store as ``<name>.wav`` and allow it (the user confirmed it).
    ``details`` (source file hash and span, speaker, who confirmed) are recorded with it; an
    existing entry of another name and every other key of the file are kept."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or ".." in name:
        raise ReferenceError(f"{name!r} is not a clip name: use letters, digits, '.', '_' and '-'")
    directory.mkdir(parents=True, exist_ok=True)
    pcm = read_wav_file(str(clip))
    target = directory / f"{name}.wav"
    if clip.resolve() != target.resolve():
        shutil.copyfile(clip, target)
    data = _read(directory)
    entry = {
        "file": target.name,
        "sha256": sha256_file(target),
        "duration_s": round(pcm.duration_s, 3),
        "sample_rate": pcm.rate,
        "source": source,
        "confirmed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **(details or {}),
    }
    data["clips"][name] = entry
    atomic_write_json(directory / METADATA, data)
    return entry


def verify(directory: Path, name: str) -> dict[str, Any]:
    """The allowlist entry of ``name`` with its absolute path, after checking the bytes' hash."""
    entry = _read(directory)["clips"].get(name)
    if entry is None:
        raise ReferenceError(
            f"the reference clip '{name}' is not in the allowlist {directory / METADATA}; "
            "extract and confirm one first (extract.yml, or `voxbench reference default` for the demo)"
        )
    path = directory / entry["file"]
    if path.parent.resolve() != directory.resolve():
        raise ReferenceError(f"the allowlist entry '{name}' points outside {directory}; fix {METADATA}")
    if not path.is_file():
        raise ReferenceError(f"the reference clip {path} listed in the allowlist is missing; restore it or re-confirm")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise ReferenceError(
            f"the reference clip {path} changed since it was confirmed (sha256 {actual[:12]}… is not "
            f"{entry['sha256'][:12]}…); confirm it again before cloning from it"
        )
    return {**entry, "name": name, "path": str(path.resolve())}
