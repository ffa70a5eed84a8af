"""A film stand-in for Phase A0: dialogue spoken by several real voices, subtitles in each format
voxbench reads, and the ground truth to measure extraction against. Seeded: the same seed gives
the same film.

The target ("SAMANTHA") is flite's slt; the distractors are flite's other voices (kal16, awb,
rms: the same engine as the target) and a second woman's voice from espeak-ng. Lines are
separated by pauses, a few overlap the line before, a low noise floor runs throughout, and music
beds (chords) play under some lines, with "♪" cues as real subtitles have them.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from bench_py.audio import Pcm, read_wav_file, write_wav_file

RATE = 24_000
TARGET = "SAMANTHA"
VOICES: dict[str, tuple[str, str]] = {
    TARGET: ("flite", "slt"),
    "THEODORE": ("flite", "kal16"),
    "PAUL": ("flite", "awb"),
    "CHARLES": ("flite", "rms"),
    "AMY": ("espeak-ng", "en-us+f4"),  # the second woman
}
FORMATS = ("voice", "dash", "youtube", "none")

_SUBJECTS = ["I", "You", "We", "They", "Everyone", "Nobody", "My sister", "The city", "Your friend", "This house"]
_VERBS = ["remember", "wanted", "found", "never liked", "kept thinking about", "could hear", "wrote about",
          "walked past", "dreamed about", "almost forgot"]  # fmt: skip
_OBJECTS = ["the old letters", "a quiet morning", "the long walk home", "the music downstairs", "that summer",
            "the ocean at night", "the empty station", "your voice on the phone", "the paper birds",
            "a window full of rain", "the strange little song", "everything you said"]  # fmt: skip
_TAILS = ["", "and it felt new", "before the light came back", "when nobody was watching", "for a long time",
          "every single day", "and then I laughed", "without saying a word"]  # fmt: skip


@dataclass(frozen=True)
class Line:
    start: float
    end: float
    speaker: str
    text: str
    overlap: bool  # starts before the line before it ends
    music: bool  # a music bed plays under it


def _sentence(rng: random.Random) -> str:
    tail = rng.choice(_TAILS)
    text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}" + (f" {tail}" if tail else "")
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"])


def script(seed: int, lines: int) -> list[tuple[str, str]]:
    """Who says what: the target speaks in runs of 2–4 lines (long stretches to cut clips from)."""
    rng = random.Random(seed)
    others = [name for name in VOICES if name != TARGET]
    out: list[tuple[str, str]] = []
    while len(out) < lines:
        if rng.random() < 0.4:
            out.extend((TARGET, _sentence(rng)) for _ in range(rng.randint(2, 4)))
        else:
            out.append((rng.choice(others), _sentence(rng)))
    return out[:lines]


def _synthesize(speaker: str, text: str, workdir: Path, index: int) -> Pcm:
    engine, voice = VOICES[speaker]
    path = workdir / f"{index:05d}.wav"
    if engine == "flite":
        command = ["flite", "-voice", voice, "-t", text, "-o", str(path)]
    else:
        command = ["espeak-ng", "-v", voice, "-w", str(path), text]
    subprocess.run(command, check=True, capture_output=True)
    pcm = read_wav_file(str(path))
    divisor = np.gcd(RATE, pcm.rate)
    samples = resample_poly(pcm.samples.astype(np.float64), RATE // divisor, pcm.rate // divisor)
    return Pcm(np.clip(samples, -32768, 32767).astype(np.int16), RATE)


def _chord(rng: random.Random, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    root = rng.choice([196.0, 220.0, 246.9, 261.6])
    tone = sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.26, 1.5, 2.0))
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.5)
    return tone * envelope / 4


def generate(out_dir: Path, seed: int = 0, lines: int = 40, video: bool = True, workers: int = 2) -> dict[str, Any]:
    """Write ``film.mp4`` (or ``film.wav`` without video), ``film.<format>.vtt`` for each format
    and ``truth.json``; returns the ground truth."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 7919 + 1)
    said = script(seed, lines)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=workers) as pool:
        audio = list(pool.map(lambda item: _synthesize(item[1][0], item[1][1], Path(tmp), item[0]), enumerate(said)))
    timeline: list[Line] = []
    at = 1.0
    music_spans: list[tuple[float, float]] = []
    for index, ((speaker, text), pcm) in enumerate(zip(said, audio, strict=True)):
        overlap = bool(timeline) and timeline[-1].speaker != speaker and rng.random() < 0.12
        start = timeline[-1].end - 0.6 if overlap else at
        end = start + pcm.duration_s
        music = index > 2 and rng.random() < 0.08
        if music:
            music_spans.append((max(0.0, start - 0.5), end + 0.5))
        timeline.append(Line(round(start, 3), round(end, 3), speaker, text, overlap, music))
        same_run = index + 1 < len(said) and said[index + 1][0] == speaker
        at = end + (rng.uniform(0.25, 0.6) if same_run else rng.uniform(0.5, 1.5))
    total = timeline[-1].end + 1.5
    mix = np.random.default_rng(seed).normal(0, 0.004, int(total * RATE))  # noise floor near -48 dBFS
    for line, pcm in zip(timeline, audio, strict=True):
        begin = int(line.start * RATE)
        mix[begin : begin + len(pcm.samples)] += pcm.samples / 32768.0 * 0.8
    for start, end in music_spans:
        begin = int(start * RATE)
        bed = _chord(rng, end - start) * 0.25
        mix[begin : begin + len(bed)] += bed[: len(mix) - begin]
    samples = np.clip(mix * 32767, -32768, 32767).astype(np.int16)
    wav = out_dir / "film-audio.wav"
    write_wav_file(str(wav), Pcm(samples, RATE))
    if video:
        film = out_dir / "film.mp4"
        video_source = f"color=c=black:s=64x64:r=1:d={total:.3f}"
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video_source, "-i", str(wav)]
        command += ["-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "128k", str(film)]
        subprocess.run(command, check=True, capture_output=True)
        wav.unlink()
    else:
        film = wav.rename(out_dir / "film.wav")
    for kind in FORMATS:
        (out_dir / f"film.{kind}.vtt").write_text(subtitles(timeline, music_spans, kind, seed), encoding="utf-8")
    truth = {
        "seed": seed,
        "target": TARGET,
        "voices": {name: f"{engine} {voice}" for name, (engine, voice) in VOICES.items()},
        "film": film.name,
        "duration_s": round(total, 3),
        "lines": [asdict(line) for line in timeline],
        "music": [[round(a, 3), round(b, 3)] for a, b in music_spans],
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return truth


def _ts(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def subtitles(lines: list[Line], music: list[tuple[float, float]], kind: str, seed: int = 0) -> str:
    """The film's subtitles in one of the four formats (times from the ground truth)."""
    rng = random.Random(seed + len(kind))
    cues: list[tuple[float, float, str]] = [
        (a, b, "♪ soft piano ♪" if kind != "youtube" else "[Music]") for a, b in music
    ]
    if kind == "voice":
        index = 0
        while index < len(lines):
            line = lines[index]
            nxt = lines[index + 1] if index + 1 < len(lines) else None
            if nxt and nxt.speaker != line.speaker and len(line.text) < 45 and rng.random() < 0.25:
                # Two speakers in one cue, one span each.
                text = f"<v {line.speaker}>{line.text}</v> <v {nxt.speaker}>{nxt.text}</v>"
                cues.append((line.start, nxt.end, text))
                index += 2
                continue
            tag = f"<v.loud {line.speaker}>" if rng.random() < 0.15 else f"<v {line.speaker}>"
            closing = "</v>" if rng.random() < 0.5 else ""
            cues.append((line.start, line.end, f"{tag}{line.text}{closing}"))
            index += 1
    elif kind == "dash":
        index = 0
        while index < len(lines):
            line = lines[index]
            nxt = lines[index + 1] if index + 1 < len(lines) else None
            if nxt and nxt.speaker != line.speaker and rng.random() < 0.5:
                cues.append((line.start, nxt.end, f"- {line.text}\n- {nxt.text}"))
                index += 2
                continue
            cues.append((line.start, line.end, line.text))
            index += 1
    elif kind == "youtube":
        previous = ""
        for line in lines:
            words = line.text.rstrip(".?!").lower().replace(",", "").split()
            step = (line.end - line.start) / max(1, len(words))
            timed = words[0] + "".join(
                f"<{_ts(line.start + step * (i + 1))}><c> {w}</c>" for i, w in enumerate(words[1:])
            )
            cues.append((line.start, line.end, f"{previous}\n{timed}" if previous else timed))
            plain_words = " ".join(words)
            cues.append((line.end, line.end + 0.01, f"{plain_words}\n "))  # the rolling snapshot
            previous = plain_words
    else:
        cues.extend((line.start, line.end, line.text) for line in lines)
    cues.sort(key=lambda cue: cue[0])
    header = "WEBVTT\nKind: captions\nLanguage: en\n" if kind == "youtube" else "WEBVTT\n"
    body = "\n".join(f"{_ts(a)} --> {_ts(b)}\n{text}\n" for a, b, text in cues)
    return f"{header}\n{body}"
