"""A reference from short lines: when too few single stretches of the target reach the minimum,
join her cleanest regions with short silences into 5–15 s references.

A region may be joined when nothing else is heard with it (no overlapping turn, no music, no
background voices, no voice running into it without a pause), it holds at least a second of
speech, and it sounds like the target: its similarity to the target is high and it agrees with
the other pieces of its clip (the clip's pieces are taken in order of similarity, each close to
the mean of those already taken). The
clip keeps the film's order of its pieces, records every source span, and is scored on the same
scale as single stretches: its own embedding's similarity to the target, SNR, length, clipping.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench_py.audio import Pcm

GAP_S = 0.3  # the silence between two pieces
MIN_PIECE_S = 1.0  # a shorter piece says little about the voice
SPEECH_S = 8.0  # speech to gather per clip before starting the next one
CONSISTENT = 0.75  # cosine of a piece to the mean of its clip's pieces
SIMILAR_BELOW_BEST = 0.12  # pieces within this of the most similar region
JOIN_PENALTY = 0.01  # per join: a continuous stretch is preferred when they sound alike


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def usable(regions: list[Any], taken: set[int]) -> list[Any]:
    """The target's regions that may be joined: clean, long enough, not in a single clip."""
    return [
        r
        for r in regions
        if id(r) not in taken
        and not (r.overlapped or r.background or r.mixed or r.touching)
        and r.end - r.start >= MIN_PIECE_S
    ]


def likely(pieces: list[Any], target: np.ndarray) -> list[Any]:
    """The pieces that sound most like the target (within 0.12 of the most similar), most similar
    first; ``similarity`` is set on each."""
    scored = [p for p in pieces if p.embedding is not None]
    for piece in scored:
        piece.similarity = round(_cosine(piece.embedding, target), 4)
    scored.sort(key=lambda p: -p.similarity)
    return [p for p in scored if p.similarity >= scored[0].similarity - SIMILAR_BELOW_BEST] if scored else []


def groups(pool: list[Any], count: int, min_s: float, max_s: float) -> list[list[Any]]:
    """Up to ``count`` clips' pieces from ``pool`` (most similar first); each clip ``min_s``–``max_s``
    with its silences, holding up to 8 s of speech (less when the clean speech there is would
    otherwise make fewer clips than asked)."""
    speech = sum(p.end - p.start for p in pool)
    per_clip = min(SPEECH_S, max(min_s, 0.75 * speech / max(1, count)))  # room for the overshoot of a last piece
    out: list[list[Any]] = []
    while pool and len(out) < count:
        clip: list[Any] = []
        for piece in pool:
            length = sum(p.end - p.start for p in clip) + GAP_S * len(clip) + piece.end - piece.start
            mean = np.mean([p.embedding for p in clip], axis=0) if clip else None
            if length > max_s or (mean is not None and _cosine(piece.embedding, mean) < CONSISTENT):
                continue  # left for a later clip
            clip.append(piece)
            if sum(p.end - p.start for p in clip) >= per_clip:
                break
        taken = {id(p) for p in clip}
        pool = [p for p in pool if id(p) not in taken]
        if sum(p.end - p.start for p in clip) + GAP_S * (len(clip) - 1) < min_s or len(clip) < 2:
            break
        out.append(sorted(clip, key=lambda p: p.start))
    return out


def audio(samples: np.ndarray, rate: int, clip: list[Any]) -> Pcm:
    """The joined clip as it will sound, from the decoded film (for its embedding)."""
    gap = np.zeros(int(GAP_S * rate), dtype=samples.dtype)
    parts: list[np.ndarray] = []
    for piece in clip:
        if parts:
            parts.append(gap)
        parts.append(samples[int(piece.start * rate) : int(piece.end * rate)])
    return Pcm(np.concatenate(parts), rate)


def filter_graph(spans: list[list[float]], rate: int) -> str:
    """ffmpeg's graph: each span faded in and out (no clicks), silences between, one loudness."""
    chains, labels = [], []
    for index, (start, end) in enumerate(spans):
        fade_out = max(0.0, end - start - 0.02)
        chains.append(
            f"[{index}:a:0]aresample={rate},aformat=channel_layouts=mono,"
            f"afade=t=in:d=0.02,afade=t=out:st={fade_out:.3f}:d=0.02[p{index}]"
        )
        labels.append(f"[p{index}]")
        if index + 1 < len(spans):
            chains.append(f"anullsrc=r={rate}:cl=mono,atrim=duration={GAP_S}[g{index}]")
            labels.append(f"[g{index}]")
    chains.append(f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1,loudnorm=I=-23:TP=-2:LRA=11,aresample={rate}[out]")
    return ";".join(chains)


def cut(
    ffmpeg: str, film: Path, spans: list[list[float]], tmp: Path, rate: int, run: Callable[..., Any] = subprocess.run
) -> Any:
    """Run ffmpeg to write the joined clip to ``tmp`` (input seeking on every span)."""
    command = [ffmpeg, "-nostdin", "-loglevel", "error", "-y"]
    for start, end in spans:
        command += ["-ss", f"{start:.3f}", "-t", f"{end - start:.3f}", "-i", str(film)]
    command += ["-filter_complex", filter_graph(spans, rate), "-map", "[out]", "-ac", "1", "-ar", str(rate),
                "-c:a", "pcm_s16le", "-map_metadata", "-1", "-fflags", "+bitexact", str(tmp)]  # fmt: skip
    return run(command, capture_output=True, text=True, check=False)


def duration(spans: list[list[float]]) -> float:
    return sum(b - a for a, b in spans) + GAP_S * (len(spans) - 1)
