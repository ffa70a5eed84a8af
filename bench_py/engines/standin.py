"""Recognising voxbench's own stand-ins, so that none ever passes for the candidate.

A stand-in is recognised before it starts — by its command (``bench_py.standins``), its image's
label (``io.voxbench.standin``), the marker in a stand-in venv, the in-process espeak-ng loader,
a tiny model's marker, or a batch command that is one of the speech engines the stand-ins speak
with — and, once running, by the ``X-Voxbench-Standin`` header every stand-in answers with.
Without ``allow_standin_engines`` such a path is ``blocked`` and never started.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HEADER = "X-Voxbench-Standin"
IMAGE_LABEL = "io.voxbench.standin"
MODULE = "bench_py.standins"
#: A stand-in venv (voxbench's vllm-omni played by the stand-in) carries this file.
VENV_MARKER = "voxbench-standin"
#: A tiny model made from a config says so in its config.json.
MODEL_MARKER = "voxbench_standin"
#: Speech engines voxbench's stand-ins speak with: real programs, never the candidate.
SPEECH_ENGINES = ("flite", "espeak-ng", "espeak", "festival", "text2wave")

BLOCKED = "set allow_standin_engines: true to run stand-ins (inventory/local does), or configure the real engine"


def _mentions_standin(argv: list[str] | None) -> bool:
    return bool(argv) and any(MODULE in part for part in argv or [])


def _fill_venv(argv: list[str] | None, venv: str | None) -> list[str]:
    return [part.replace("{venv}", venv or "{venv}") for part in argv or []]


def path_reason(name: str, candidate: Any, image_labels: Mapping[str, str] | None = None) -> str | None:
    """Why install path ``name`` would run a voxbench stand-in, or None."""
    if name == "2A":
        if _mentions_standin(candidate.command):
            return f"2A's command runs voxbench's stand-in ({MODULE}), not the engine"
        role = (image_labels or {}).get(IMAGE_LABEL)
        if role:
            return f"the image {candidate.image} is voxbench's stand-in ({IMAGE_LABEL}={role})"
    elif name == "2B":
        process = candidate.process
        if _mentions_standin(process.command) or _mentions_standin(process.version_command):
            return f"2B's command runs voxbench's stand-in ({MODULE}), not the engine"
        venv = process.venv
        if venv and (Path(os.path.expanduser(venv)) / VENV_MARKER).exists():
            return f"the venv {venv} is voxbench's stand-in venv (it holds {VENV_MARKER})"
    elif name == "2C":
        loader = candidate.in_process
        if loader.loader == "espeak-ng":
            return "2C's espeak-ng loader is voxbench's in-process stand-in, not the candidate model"
        model_path = loader.model_path or _cached_snapshot(candidate)
        if model_path and _tiny_model(Path(os.path.expanduser(model_path))):
            return f"{model_path} is a tiny stand-in model made from a config ({MODEL_MARKER})"
    elif name == "2D":
        command = candidate.batch.command
        if _mentions_standin(command):
            return f"2D's command runs voxbench's stand-in ({MODULE}), not the engine"
        engine = _speech_engine(command)
        if engine:
            return f"2D's command runs {engine}, a speech engine voxbench stands in with"
    return None


def _speech_engine(argv: list[str] | None) -> str | None:
    """A stand-in speech engine the command runs, wherever in it: first, after ``env``/``nice``,
    or inside an ``sh -c`` line."""
    for part in argv or []:
        for word in str(part).replace(";", " ").replace("|", " ").replace("&", " ").split():
            if os.path.basename(word) in SPEECH_ENGINES:
                return os.path.basename(word)
    return None


def _cached_snapshot(candidate: Any) -> str | None:
    """Without a model_path, 2C loads ``candidate.model`` from the Hugging Face cache: its newest snapshot."""
    cache = getattr(candidate, "hf_cache_dir", None)
    if not cache or not candidate.model:
        return None
    snapshots = Path(os.path.expanduser(cache)) / "hub" / f"models--{candidate.model.replace('/', '--')}" / "snapshots"
    try:
        newest = max(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, default=None)
    except OSError:
        return None
    return str(newest) if newest else None


def _tiny_model(path: Path) -> bool:
    try:
        return bool(json.loads((path / "config.json").read_text()).get(MODEL_MARKER))
    except (OSError, ValueError, AttributeError):
        return False


def answered_as(headers: Mapping[str, str]) -> str | None:
    """The stand-in a running server says it is (its ``X-Voxbench-Standin`` header), or None."""
    for key, value in headers.items():
        if key.lower() == HEADER.lower():
            return value
    return None
