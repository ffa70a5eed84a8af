"""A film stand-in for Phase A0: dialogue spoken by several real voices, subtitles in each shape
voxbench reads (:mod:`bench_py.standins.film_subtitles`), and the ground truth to measure
extraction against. Seeded: the same seed gives the same film.

The target ("SAMANTHA") is flite's slt; the distractors are flite's other voices (kal16, awb,
rms: the same engine as the target), a second woman from espeak-ng, and ISABEL: the same recorded
speaker as the target through another engine (festival's slt HTS voice), the closest voice there
is to hers. A low noise floor runs throughout, music beds (chords) play under some lines with
"♪" cues as real subtitles have them, and background voices murmur under a few scenes.

Two styles: ``long`` — the target speaks in runs of 2–4 lines (stretches long enough to cut
clips from); ``short`` — as real dialogue mostly is: her lines run 1.5–4.5 s, other voices come
between them, often within half a second, sometimes over her.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from bench_py.audio import Pcm, read_wav_file, write_wav_file
from bench_py.standins.film_subtitles import FILES, SHAPES
from bench_py.standins.film_subtitles import write as write_subtitles

RATE = 24_000
TARGET = "SAMANTHA"
VOICES: dict[str, tuple[str, str]] = {
    TARGET: ("flite", "slt"),
    "THEODORE": ("flite", "kal16"),
    "PAUL": ("flite", "awb"),
    "CHARLES": ("flite", "rms"),
    "AMY": ("espeak-ng", "en-us+f4"),  # the second woman
    "ISABEL": ("festival", "cmu_us_slt_arctic_hts"),  # the target's own voice through another engine
}
DISTRACTOR = "ISABEL"
FORMATS = SHAPES  # the subtitle shapes written beside each film (FILES names their files)
STYLES = ("long", "short")
SHORT_LINE_S = (1.5, 4.5)

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


def _short_sentence(rng: random.Random) -> str:
    """A line of 1.5–4.5 s: a few words, as people answer each other."""
    openers = ["Yes,", "No,", "Well,", "Listen,", "Okay,", "Maybe", "Really?", "Look,"]
    text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.35:
        text = f"{rng.choice(openers)} {text[0].lower()}{text[1:]}"
    return text[0].upper() + text[1:] + rng.choice([".", ".", "?", "!"])


def script(seed: int, lines: int, style: str = "long") -> list[tuple[str, str]]:
    """Who says what. ``long``: the target speaks in runs of 2–4 lines (long stretches to cut
    clips from). ``short``: never two target lines in a row; one line in eight of the others is
    the distractor who sounds most like her."""
    rng = random.Random(seed)
    others = [name for name in VOICES if name not in (TARGET, DISTRACTOR)]
    out: list[tuple[str, str]] = []
    while len(out) < lines:
        if style == "long":
            if rng.random() < 0.4:
                out.extend((TARGET, _sentence(rng)) for _ in range(rng.randint(2, 4)))
            else:
                out.append((rng.choice(others), _sentence(rng)))
            continue
        if out and out[-1][0] != TARGET and rng.random() < 0.8:
            out.append((TARGET, _short_sentence(rng)))
        else:
            speaker = DISTRACTOR if rng.random() < 0.125 else rng.choice(others)
            out.append((speaker, _short_sentence(rng) if rng.random() < 0.7 else _sentence(rng)))
    return out[:lines]


def _synthesize(speaker: str, text: str, workdir: Path, index: int) -> Pcm:
    engine, voice = VOICES[speaker]
    path = workdir / f"{index:05d}.wav"
    if engine == "flite":
        command = ["flite", "-voice", voice, "-t", text, "-o", str(path)]
    elif engine == "festival":
        command = ["text2wave", "-eval", f"(voice_{voice})", "-o", str(path)]
        subprocess.run(command, input=text.encode(), check=True, capture_output=True)
        command = []
    else:
        command = ["espeak-ng", "-v", voice, "-w", str(path), text]
    if command:
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


def _trim(pcm: Pcm) -> Pcm:
    """The line without the engine's leading and trailing silence: the truth times are speech."""
    loud = np.flatnonzero(np.abs(pcm.samples.astype(np.int32)) > 300)
    if len(loud) == 0:
        return pcm
    margin = int(0.02 * pcm.rate)
    return Pcm(pcm.samples[max(0, loud[0] - margin) : loud[-1] + margin], pcm.rate)


def _voices(said: list[tuple[str, str]], rng: random.Random, style: str, workdir: Path, workers: int) -> list[Pcm]:
    """Each line's audio; in the short style a target line outside 1.5–4.5 s is said again, shorter or longer."""

    def voiced(numbered: tuple[int, tuple[str, str]]) -> Pcm:
        index, (speaker, text) = numbered
        return _trim(_synthesize(speaker, text, workdir, index))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        audio = list(pool.map(voiced, enumerate(said)))
    if style == "short":
        low, high = SHORT_LINE_S
        for index, (speaker, _text) in enumerate(said):
            tries = 0
            while speaker == TARGET and not low <= audio[index].duration_s <= high and tries < 20:
                said[index] = (speaker, _short_sentence(rng))
                audio[index] = _trim(_synthesize(speaker, said[index][1], workdir, index))
                tries += 1
    return audio


def _timeline(said: list[tuple[str, str]], audio: list[Pcm], rng: random.Random, style: str) -> list[Line]:
    timeline: list[Line] = []
    at = 1.0
    for index, ((speaker, text), pcm) in enumerate(zip(said, audio, strict=True)):
        prev = timeline[-1] if timeline else None
        if style == "short" and prev and prev.speaker != speaker:
            # Real dialogue: often within half a second of the voice before, sometimes over it.
            roll = rng.random()
            if roll < 0.14:
                start = max(prev.start + 0.4, prev.end - rng.uniform(0.3, 0.8))
            elif roll < 0.55:
                start = prev.end + rng.uniform(0.08, 0.5)
            else:
                start = prev.end + rng.uniform(0.6, 1.4)
        elif style == "long" and prev and prev.speaker != speaker and rng.random() < 0.12:
            start = prev.end - 0.6
        else:
            start = at
        end = start + pcm.duration_s
        music = index > 2 and rng.random() < (0.06 if style == "short" else 0.08)
        timeline.append(Line(round(start, 3), round(end, 3), speaker, text, bool(prev and start < prev.end), music))
        same_run = index + 1 < len(said) and said[index + 1][0] == speaker
        at = end + (rng.uniform(0.25, 0.6) if same_run else rng.uniform(0.5, 1.5))
    return timeline


def _stretch(timeline: list[Line], seconds: float) -> list[Line]:
    """Scene breaks of room tone only (films are not all dialogue), so that the film lasts about
    ``seconds``: the time is shared among breaks before every twelfth line that overlaps nothing."""
    total = max(x.end for x in timeline) + 1.5
    breaks = {i for i in range(12, len(timeline), 12) if timeline[i].start >= timeline[i - 1].end}
    if total >= seconds or not breaks:
        return timeline
    extra, shift, out = (seconds - total) / len(breaks), 0.0, []
    for index, line in enumerate(timeline):
        shift += extra if index in breaks else 0.0
        out.append(replace(line, start=round(line.start + shift, 3), end=round(line.end + shift, 3)))
    return out


def _background(timeline: list[Line], audio: list[Pcm], rng: random.Random, total: float) -> list[tuple[float, float]]:
    """One or two scenes with voices murmuring under the dialogue (a café, a party): under 8% of the film."""
    spans = []
    for _ in range(rng.randint(1, 2)):
        length = min(rng.uniform(15, 30), total * 0.04)
        start = rng.uniform(total * 0.1, max(total * 0.1, total * 0.9 - length))
        spans.append((round(start, 3), round(start + length, 3)))
    return spans


def generate(
    out_dir: Path, seed: int = 0, lines: int = 40, video: bool = True, workers: int = 2, style: str = "long",
    minutes: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write ``film.mp4`` (or ``film.wav`` without video), the subtitles in every shape (``FILES``)
    and ``truth.json``; returns the ground truth. ``minutes``: stretch the film to about that long
    with scene breaks (a 2-hour film with 1,500 cues is mostly not dialogue)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 7919 + 1)
    said = script(seed, lines, style)
    with tempfile.TemporaryDirectory() as tmp:
        audio = _voices(said, rng, style, Path(tmp), workers)
    timeline = _timeline(said, audio, rng, style)
    if minutes:
        timeline = _stretch(timeline, minutes * 60)
    music_spans = [(max(0.0, x.start - 0.5), x.end + 0.5) for x in timeline if x.music]
    total = max(x.end for x in timeline) + 1.5
    mix = np.random.default_rng(seed).normal(0, 0.004, int(total * RATE))  # noise floor near -48 dBFS
    for line, pcm in zip(timeline, audio, strict=True):
        begin = int(line.start * RATE)
        mix[begin : begin + len(pcm.samples)] += pcm.samples / 32768.0 * 0.8
    for start, end in music_spans:
        begin = int(start * RATE)
        bed = _chord(rng, end - start) * 0.25
        mix[begin : begin + len(bed)] += bed[: len(mix) - begin]
    background = _background(timeline, audio, rng, total) if style == "short" else []
    murmur = [pcm for line, pcm in zip(timeline, audio, strict=True) if line.speaker not in (TARGET, DISTRACTOR)]
    for start, end in background:
        for voice in range(4):  # four voices, about 10 dB over the noise floor together
            at = start + voice * 0.7
            while at < end and murmur:
                pcm = rng.choice(murmur)
                piece = pcm.samples[: int((end - at) * RATE)] / 32768.0 * 0.06
                begin = int(at * RATE)
                mix[begin : begin + len(piece)] += piece[: len(mix) - begin]
                at += len(piece) / RATE + rng.uniform(0.1, 0.6)
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
    for shape, name in FILES.items():
        (out_dir / name).write_bytes(write_subtitles(timeline, music_spans, shape, seed).encode("utf-8"))
    truth = {
        "seed": seed,
        "style": style,
        "target": TARGET,
        "distractor": DISTRACTOR,
        "voices": {name: f"{engine} {voice}" for name, (engine, voice) in VOICES.items()},
        "film": film.name,
        "subtitles": FILES,
        "duration_s": round(total, 3),
        "lines": [asdict(line) for line in timeline],
        "music": [[round(a, 3), round(b, 3)] for a, b in music_spans],
        "background": [list(span) for span in background],
        "distractor_similarity": _distractor_similarity(timeline, audio),
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return truth


def _distractor_similarity(timeline: list[Line], audio: list[Pcm]) -> float | None:
    """Speaker similarity of the distractor's lines to the target's (the shared scorer), or None
    without the judge extra or without distractor lines."""
    try:
        from bench_py.judge.similarity import embed
    except ImportError:
        return None

    def voice_of(name: str) -> Pcm | None:
        pieces = [pcm.samples for line, pcm in zip(timeline, audio, strict=True) if line.speaker == name][:8]
        return Pcm(np.concatenate(pieces), RATE) if pieces else None

    target, distractor = voice_of(TARGET), voice_of(DISTRACTOR)
    if target is None or distractor is None:
        return None
    a, b = embed(target), embed(distractor)
    return round(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))), 3)


def properties(truth: dict[str, Any]) -> dict[str, Any]:
    """What makes this film hard, measured on its ground truth (printed by bench/extraction.py)."""
    lines = truth["lines"]
    target = [x for x in lines if x["speaker"] == truth["target"]]
    others = [x for x in lines if x["speaker"] != truth["target"]]

    def gap(line: dict[str, Any]) -> float:
        """Seconds to the nearest other voice (negative: overlapped)."""
        return min((max(o["start"] - line["end"], line["start"] - o["end"]) for o in others), default=99.0)

    gaps = [gap(x) for x in target]
    durations = [x["end"] - x["start"] for x in target]
    longest, run_start, run_end = 0.0, None, None
    for line in sorted(lines, key=lambda x: x["start"]):  # the longest target speech with nobody between
        if line["speaker"] != truth["target"]:
            run_start = None
            continue
        if run_start is None or line["start"] - run_end > 1.0:
            run_start = line["start"]
        run_end = line["end"]
        longest = max(longest, run_end - run_start)
    return {
        "duration_s": truth["duration_s"],
        "style": truth.get("style", "long"),
        "lines": len(lines),
        "target_lines": len(target),
        "target_line_s": [round(min(durations), 2), round(max(durations), 2)] if durations else None,
        "longest_uninterrupted_target_s": round(longest, 2),
        "near_another_voice": round(sum(g <= 0.5 for g in gaps) / max(1, len(gaps)), 2),
        "overlapped": round(sum(g < 0 for g in gaps) / max(1, len(gaps)), 2),
        "distractor_similarity": truth.get("distractor_similarity"),
        "music_s": round(sum(b - a for a, b in truth["music"]), 1),
        "background_voices_s": round(sum(b - a for a, b in truth.get("background", [])), 1),
        "subtitles": sorted(truth.get("subtitles", {}).values()),
    }
