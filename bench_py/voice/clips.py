"""A film's audio read for analysis, and reference clips cut out of it: names from integers only,
paths checked to stay in their folder, ffmpeg with input seeking and loudness normalization,
every clip read back."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench_py.audio import read_wav_file
from bench_py.voice import joined
from bench_py.voice.speech import ANALYSIS_RATE

CLIP_RATE = 24_000


class ExtractError(ValueError):
    """The film or its subtitles cannot be used; the message says why and what to do."""


def need_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ExtractError(f"{tool} is missing: install it (apt-get install ffmpeg)")
    return path


def load_audio(film: Path, rate: int = ANALYSIS_RATE) -> np.ndarray:
    """The film's first audio stream as mono int16 at ``rate``."""
    ffmpeg = need_tool("ffmpeg")
    if not Path(film).is_file():
        raise ExtractError(f"{film} does not exist")
    result = subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(film), "-map", "0:a:0", "-vn", "-ac", "1",
         "-ar", str(rate), "-f", "s16le", "-"],
        capture_output=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        if any("matches no streams" in line or "does not contain any stream" in line for line in said):
            raise ExtractError(f"{Path(film).name} has no audio stream: nothing to extract")
        raise ExtractError(f"ffmpeg cannot read {Path(film).name}: {said[-1] if said else result.returncode}")
    samples = np.frombuffer(result.stdout, dtype="<i2")
    if len(samples) < rate:
        raise ExtractError(f"{Path(film).name} has under 1 s of audio")
    return samples


def clip_name(start: float, end: float, taken: set[str], joined_clip: bool = False) -> str:
    """``<start_s>-<end_s>.wav`` from integers only (``joined-`` before a joined clip's first and
    last second); ``-<k>`` when whole seconds clash."""
    base = f"{'joined-' if joined_clip else ''}{int(start)}-{int(end)}"
    name, k = f"{base}.wav", 2
    while name in taken:
        name, k = f"{base}-{k}.wav", k + 1
    taken.add(name)
    return name


def inside(directory: Path, name: str) -> Path:
    target = (directory / name).resolve()
    if target.parent != directory.resolve():
        raise ExtractError(f"refusing to write {name!r} outside {directory}")
    return target


def cut(film: Path, start: float, end: float, target: Path) -> str | None:
    """Cut one clip with input seeking, loudness-normalized; None when it is good, else why not."""
    tmp = target.with_name(f".{target.name}.tmp.wav")
    result = subprocess.run(
        [need_tool("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-ss", f"{start:.3f}", "-t", f"{end - start:.3f}",
         "-i", str(film), "-vn", "-ac", "1", "-ar", str(CLIP_RATE), "-af", "loudnorm=I=-23:TP=-2:LRA=11",
         "-ar", str(CLIP_RATE), "-c:a", "pcm_s16le", "-map_metadata", "-1", "-fflags", "+bitexact", str(tmp)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return _keep(result, tmp, target, end - start)


def cut_joined(film: Path, spans: list[list[float]], target: Path) -> str | None:
    """Cut a joined clip (every span, silences between); None when it is good, else why not."""
    tmp = target.with_name(f".{target.name}.tmp.wav")
    result = joined.cut(need_tool("ffmpeg"), film, spans, tmp, CLIP_RATE)
    return _keep(result, tmp, target, joined.duration(spans))


def _keep(result: subprocess.CompletedProcess[str], tmp: Path, target: Path, duration: float) -> str | None:
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        return f"ffmpeg failed: {result.stderr.strip()[-200:]}"
    size = tmp.stat().st_size
    got = read_wav_file(str(tmp)).duration_s if size > 44 else 0.0
    if size <= 2048:
        tmp.unlink()
        return f"the clip is {size} bytes (needs more than 2048)"
    if abs(got - duration) > 0.25:
        tmp.unlink()
        return f"the clip decodes to {got:.2f} s, not the {duration:.2f} s asked for"
    tmp.replace(target)
    return None


def write_representatives(film: Path, out_dir: Path, clusters: list[dict[str, Any]]) -> None:
    folder = out_dir / "clusters"
    folder.mkdir(exist_ok=True)

    def cut_one(entry: dict[str, Any]) -> None:
        rep, name = entry["representative"], f"cluster-{int(entry['cluster'])}.wav"
        reason = cut(Path(film), rep["start"], rep["end"], inside(folder, name))
        entry["file"] = None if reason else f"clusters/{name}"

    with ThreadPoolExecutor(max_workers=2) as pool:  # one ffmpeg per cluster, two at a time
        list(pool.map(cut_one, clusters))
