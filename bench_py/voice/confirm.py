"""Listening to extracted candidates and confirming one into the references allowlist."""

from __future__ import annotations

import getpass
import shlex
import subprocess
from pathlib import Path
from typing import Any

from bench_py.voice import clips, extract, references


def candidate(out_dir: Path, rank: int) -> dict[str, Any]:
    data = extract.load(out_dir)
    for entry in data["candidates"]:
        if entry["rank"] == rank:
            if not entry.get("file"):
                raise clips.ExtractError(f"candidate {rank} was ranked but not cut; extract again with a larger --top")
            return {**entry, "path": str(clips.inside(Path(out_dir), entry["file"]))}
    raise clips.ExtractError(f"there is no candidate {rank}; `voxbench voices list {out_dir}` shows them")


def play(path: Path, player: str) -> None:
    subprocess.run([*shlex.split(player), str(path)], check=False)


def confirm(
    out_dir: Path, rank: int, name: str, references_dir: Path, confirmed_by: str | None = None
) -> dict[str, Any]:
    """Copy the chosen clip into the references store with its provenance (the allowlist entry)."""
    data = extract.load(out_dir)
    chosen = candidate(out_dir, rank)
    spans = chosen.get("spans") or [[chosen["start"], chosen["end"]]]
    kind = chosen.get("kind", "single")
    details = {
        "speaker": chosen.get("speaker") or data.get("speaker"),
        "source_file": Path(data["film"]).name,
        "source_sha256": data["film_sha256"],
        "source_span_s": [chosen["start"], chosen["end"]],
        "kind": kind,  # single: one stretch of the film; joined: the spans below, 0.3 s of silence between
        "source_spans_s": spans,
        "subtitles": Path(data["subtitles"]).name,
        "subtitle_format": data["format"],
        "similarity": chosen["similarity"],
        "confirmed_by": confirmed_by or getpass.getuser(),
        "added_by": "voxbench",
    }
    where = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in spans)
    source = f"{Path(data['film']).name} {'joined ' if kind == 'joined' else ''}{where} s"
    return references.add_confirmed(Path(references_dir), name, Path(chosen["path"]), source, details)
