"""Speech regions of a film: where the subtitles say someone speaks, refined by an energy
voice-activity detector, with what else is heard there (another speaker, music, background
voices)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench_py.audio import Pcm
from bench_py.voice import vtt

ANALYSIS_RATE = 16_000
FRAME_S = 0.02
MIN_REGION_S = 0.6


@dataclass
class Region:
    start: float
    end: float
    speaker: str | None
    line: int
    overlapped: bool = False  # another speaker or music at the same time
    embedding: Any = field(default=None, repr=False)
    cluster: int | None = None
    background: bool = False  # voices or noise murmur under it (the local floor is raised)
    touching: bool = False  # cut where speech goes on: another voice runs into it without a pause
    mixed: bool = False  # another voice inside it: its likeness to the target drops somewhere along it
    least_likeness: float | None = None  # the least-like 1.2 s window's similarity to the target
    checked: bool = False  # least_likeness measured
    similarity: float | None = None  # to the target, once known


def frame_levels(samples: np.ndarray, rate: int = ANALYSIS_RATE) -> np.ndarray:
    """RMS level in dBFS of each 20 ms frame."""
    size = int(rate * FRAME_S)
    usable = len(samples) // size * size
    frames = samples[:usable].astype(np.float32).reshape(-1, size) / 32768.0
    power: np.ndarray = np.mean(frames * frames, axis=1)  # numpy types a reduction over an axis as Any
    return 10 * np.log10(power + 1e-10)


def speech_frames(levels: np.ndarray) -> tuple[np.ndarray, float]:
    """Energy VAD: frames 12 dB over the noise floor (the 10th percentile level); the floor."""
    floor = float(np.percentile(levels, 10))
    threshold = max(floor + 12.0, -55.0)
    speech = levels > threshold
    # Close gaps shorter than 200 ms (stops and plosives), drop blips shorter than 100 ms.
    speech = _close(speech, int(0.2 / FRAME_S))
    speech = ~_close(~speech, int(0.1 / FRAME_S))
    return speech, floor


def _close(mask: np.ndarray, width: int) -> np.ndarray:
    """Fill runs of False no longer than ``width`` frames that have True on both sides."""
    out = mask.copy()
    for begin, finish in _runs(~mask):
        if begin > 0 and finish < len(mask) and finish - begin <= width:
            out[begin:finish] = True
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]])
    changes = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(changes[::2], changes[1::2], strict=True))


def regions(subs: vtt.Subtitles, speech: np.ndarray, levels: np.ndarray | None = None) -> list[Region]:
    """Speech regions: subtitle turns cut to where there is speech (silence inside a turn splits
    it, and a turn is not followed into a neighbouring turn of someone else); where cues are not
    turns (``vtt.STREAM_FORMATS``), speech is followed across cues and split by silence alone."""
    stream = subs.format in vtt.STREAM_FORMATS
    out = _stream_regions(subs, speech) if stream else _turn_regions(subs, speech)
    out.sort(key=lambda r: r.start)
    _mark_overlaps(out, subs)
    if levels is not None:
        _mark_background(out, speech, levels)
    return out


def _speech_runs(speech: np.ndarray, lo: float, hi: float) -> list[tuple[float, float, bool]]:
    """(start, end, touching) of the speech between ``lo`` and ``hi``; touching: the speech goes
    on past the window, so the region was cut where another voice runs into it."""
    first, last = max(0, int(lo / FRAME_S)), min(len(speech), int(hi / FRAME_S))
    out = []
    for a, b in _runs(speech[first:last]):
        start, end = (first + a) * FRAME_S, (first + b) * FRAME_S
        touching = bool(
            (a == 0 and first > 0 and speech[first - 1]) or (first + b == last < len(speech) and speech[last])
        )
        if end - start >= MIN_REGION_S:
            out.append((round(float(start), 2), round(float(end), 2), touching))
    return out


def _turn_regions(subs: vtt.Subtitles, speech: np.ndarray) -> list[Region]:
    turns = sorted(subs.turns, key=lambda t: t.start)

    def other(a: vtt.Turn, b: vtt.Turn) -> bool:
        return a is not b and not (subs.format == "voice" and a.speaker == b.speaker)

    out: list[Region] = []
    for index, turn in enumerate(turns):
        lo, hi = turn.start - 0.2, turn.end + 0.3
        for before in turns[max(0, index - 4) : index]:
            if other(turn, before) and before.end <= turn.start + 0.05:
                lo = max(lo, before.end)
        for after in turns[index + 1 : index + 5]:
            if other(turn, after) and after.start >= turn.end - 0.05:
                hi = min(hi, after.start)
        out.extend(Region(a, b, turn.speaker, turn.line, touching=t) for a, b, t in _speech_runs(speech, lo, hi))
    return out


def _stream_regions(subs: vtt.Subtitles, speech: np.ndarray) -> list[Region]:
    turns = sorted(subs.turns, key=lambda t: t.start)
    starts = [t.start for t in turns]
    spans: list[list[float]] = []
    for turn in turns:
        if spans and turn.start - 0.2 <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], turn.end + 0.3)
        else:
            spans.append([turn.start - 0.2, turn.end + 0.3])
    out = []
    for lo, hi in spans:
        for a, b, touching in _speech_runs(speech, lo, hi):
            at = max(0, bisect.bisect_right(starts, a + 0.2) - 1)
            out.append(Region(a, b, None, turns[at].line, touching=touching))
    return out


def _mark_overlaps(found: list[Region], subs: vtt.Subtitles) -> None:
    turns = sorted(subs.turns, key=lambda t: t.start)
    starts = [t.start for t in turns]
    longest = max((t.end - t.start for t in turns), default=0.0)
    for region in found:
        for a, b in subs.music:
            if a < region.end and region.start < b:
                region.overlapped = True
        if subs.format in vtt.STREAM_FORMATS:
            continue  # cues are not turns: overlapping speech shows in the voice, not in the subtitles
        at = bisect.bisect_left(starts, region.end - 0.1)
        for turn in reversed(turns[bisect.bisect_left(starts, region.start - longest - 1) : at]):
            if turn.line == region.line or not (turn.start < region.end - 0.1 and region.start + 0.1 < turn.end):
                continue
            if subs.format == "voice" and turn.speaker == region.speaker:
                continue
            region.overlapped = True
            break


def _mark_background(found: list[Region], speech: np.ndarray, levels: np.ndarray, around_s: float = 0.6) -> None:
    """Voices murmuring under a scene raise the level between words: a region where a quarter of
    the quiet frames in and around it sit 5 dB over the film's noise floor has someone under it."""
    floor = float(np.percentile(levels, 10))
    quiet_levels = np.where(speech[: len(levels)], np.nan, levels)
    for region in found:
        a, b = int((region.start - around_s) / FRAME_S), int((region.end + around_s) / FRAME_S)
        quiet = quiet_levels[max(0, a) : b]
        quiet = quiet[~np.isnan(quiet)]
        if len(quiet) >= 5 and float(np.percentile(quiet, 75)) > floor + 5.0:
            region.background = True


WINDOW_S, HOP_S = 1.2, 0.6
MIXED_BELOW = 0.08  # under the usual likeness of the target's regions by this much: someone else is in it


class MixedCheck:
    """Another voice inside a region (no pause between them, or over her) shows as a drop in
    likeness to the target somewhere along it: a region's least-like 1.2 s window is compared with
    the usual for the target's regions (the upper quartile of their least-like values, from an
    even sample of up to 80 of them). Regions are checked when they are about to be offered, so
    a 2-hour film does not pay for the thousands that never are."""

    def __init__(self, chosen: list[Region], samples: np.ndarray, target: np.ndarray, embed_many: Any) -> None:
        self.samples, self.target, self.embed_many = samples, target, embed_many
        sample = chosen[:: max(1, len(chosen) // 80)]
        self._measure(sample)
        values = [r.least_likeness for r in sample if r.least_likeness is not None]
        self.usual = float(np.percentile(values, 75)) if values else None

    def _measure(self, regions: list[Region]) -> None:
        todo = [r for r in regions if not r.checked]
        windows, owners = [], []
        for index, region in enumerate(todo):
            length = region.end - region.start
            count = 1 if length <= WINDOW_S else int(np.ceil((length - WINDOW_S) / HOP_S)) + 1
            for k in range(count):
                a = min(region.start + k * HOP_S, max(region.start, region.end - WINDOW_S))
                b = min(region.end, a + WINDOW_S)
                windows.append(Pcm(self.samples[int(a * ANALYSIS_RATE) : int(b * ANALYSIS_RATE)], ANALYSIS_RATE))
                owners.append(index)
        least: dict[int, float] = {}
        for index, vector in zip(owners, self.embed_many(windows) if windows else [], strict=True):
            if vector is not None:
                likeness = float(np.dot(vector, self.target) / (np.linalg.norm(vector) * np.linalg.norm(self.target)))
                least[index] = min(least.get(index, 1.0), likeness)
        for index, region in enumerate(todo):
            region.least_likeness, region.checked = least.get(index), True

    def mark(self, regions: list[Region]) -> None:
        """Measure these regions (once) and set ``mixed`` on each."""
        self._measure(regions)
        for region in regions:
            least, usual = region.least_likeness, self.usual
            region.mixed = least is None or usual is None or least < usual - MIXED_BELOW
