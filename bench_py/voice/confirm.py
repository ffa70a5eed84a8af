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


def extract_and_confirm(
    film: Path,
    subtitles: Path,
    out_dir: Path,
    *,
    speaker: str | None = None,
    example: Path | None = None,
    cluster: int | None = None,
    top: int = 5,
    min_seconds: float = extract.MIN_SEGMENT_S,
    confirm_rank: int | None = None,
    reference_name: str | None = None,
    references_dir: Path | None = None,
    confirmed_by: str | None = None,
) -> dict[str, Any]:
    """Phase A0 in one call (``extract.yml``, ``api.extract``): rank the speaker's clips, and with
    ``confirm_rank`` put that one into ``references_dir`` as ``reference_name``; returns the facts
    the playbook shows (``voxbench_extraction``)."""
    from bench_py.voice import findings

    if confirm_rank is not None and (not reference_name or references_dir is None):
        raise clips.ExtractError("confirming a clip needs its reference name and the references directory")
    result = extract.extract(
        Path(film), Path(subtitles), Path(out_dir), speaker=speaker, example=Path(example) if example else None,
        cluster_choice=cluster, top=top, min_seconds=min_seconds,
    )  # fmt: skip
    data = result.to_json()
    confirmed = None
    if confirm_rank is not None and reference_name and references_dir is not None:
        entry = confirm(Path(out_dir), confirm_rank, reference_name, Path(references_dir), confirmed_by)
        confirmed = {**entry, "path": str(Path(references_dir) / entry["file"])}
    return {
        "syntax": data["syntax"],
        "format": data["format"],
        "format_reason": data["format_reason"],
        "mode": data["mode"],
        "candidates": [c for c in data["candidates"] if c.get("file")],
        "clusters": data["clusters"],
        "rejected": len(data["rejected"]),
        "skipped_cues": data["skipped_cues"],
        "timings_s": data["timings_s"],
        "summary": data["summary"],
        "summary_lines": findings.lines(data["summary"]),
        "out_dir": str(out_dir),
        "confirmed": confirmed,
    }
