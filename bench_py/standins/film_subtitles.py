"""The film stand-in's subtitles, in each shape people really have (docs/extraction.md shows them):

* ``voice`` — WebVTT with ``<v Name>`` spans (two speakers in one cue now and then);
* ``dash`` — WebVTT with ``- `` turns when two lines come close;
* ``youtube`` — yt-dlp's YouTube auto-captions in their real shape: ``Kind:``/``Language:`` header,
  ``align:start position:0%``, a line of one space above the first words, the line before rolled
  up above each new line, inline word times, 10 ms snapshot cues, ``[Music]`` cues; the words run
  across speakers, lower case, no punctuation, as speech recognition writes them;
* ``continuous`` — WebVTT cues cut every few seconds, back to back, across turns (captions made
  by time, not by speaker);
* ``none`` — WebVTT, one plain cue per line;
* ``srt`` — SubRip with CRLF line ends, cue numbers, comma times, ``- `` turns and ``<i>``.

Times come from the ground truth; words are spread over their line by length, as a captioner or a
recognizer would place them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Protocol

SHAPES = ("voice", "dash", "youtube", "continuous", "none", "srt")
FILES = {shape: "film.srt" if shape == "srt" else f"film.{shape}.vtt" for shape in SHAPES}


class SpokenLine(Protocol):
    """A line as the writers read it (read-only, so the film's frozen lines qualify)."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def speaker(self) -> str: ...
    @property
    def text(self) -> str: ...


def _ts(seconds: float, comma: bool = False) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{',' if comma else '.'}{rest % 1000:03d}"


def _words(lines: Sequence[SpokenLine]) -> list[tuple[float, str]]:
    """(start, word) of every word, in time order: each line's words spread over it by length."""
    out = []
    for line in lines:
        words = line.text.split()
        total = sum(len(w) + 1 for w in words)
        at = line.start
        for word in words:
            out.append((at, word))
            at += (line.end - line.start) * (len(word) + 1) / total
    return sorted(out)


def _vtt(cues: list[tuple[float, float, str]], header: str = "WEBVTT\n") -> str:
    cues = sorted(cues, key=lambda cue: cue[0])
    return header + "\n" + "\n".join(f"{_ts(a)} --> {_ts(b)}\n{text}\n" for a, b, text in cues)


def _paired(
    lines: Sequence[SpokenLine], rng: random.Random, chance: float, gap: float = 0.6
) -> Iterator[tuple[SpokenLine, SpokenLine | None]]:
    """Lines one by one, or two close lines of different speakers together."""
    index = 0
    while index < len(lines):
        line, nxt = lines[index], lines[index + 1] if index + 1 < len(lines) else None
        if nxt and nxt.speaker != line.speaker and nxt.start - line.end < gap and rng.random() < chance:
            yield line, nxt
            index += 2
        else:
            yield line, None
            index += 1


def voice(lines: Sequence[SpokenLine], music: list[tuple[float, float]], rng: random.Random) -> str:
    cues = [(a, b, "♪ soft piano ♪") for a, b in music]
    for line, nxt in _paired(lines, rng, 0.25):
        if nxt:
            cues.append((line.start, nxt.end, f"<v {line.speaker}>{line.text}</v> <v {nxt.speaker}>{nxt.text}</v>"))
            continue
        tag = f"<v.loud {line.speaker}>" if rng.random() < 0.15 else f"<v {line.speaker}>"
        cues.append((line.start, line.end, f"{tag}{line.text}{'</v>' if rng.random() < 0.5 else ''}"))
    return _vtt(cues)


def dash(lines: Sequence[SpokenLine], music: list[tuple[float, float]], rng: random.Random) -> str:
    cues = [(a, b, "♪ soft piano ♪") for a, b in music]
    for line, nxt in _paired(lines, rng, 0.6):
        cues.append((line.start, nxt.end, f"- {line.text}\n- {nxt.text}") if nxt else (line.start, line.end, line.text))
    return _vtt(cues)


def none(lines: Sequence[SpokenLine], music: list[tuple[float, float]], rng: random.Random) -> str:
    return _vtt([(a, b, "♪ soft piano ♪") for a, b in music] + [(x.start, x.end, x.text) for x in lines])


def continuous(lines: Sequence[SpokenLine], music: list[tuple[float, float]], rng: random.Random) -> str:
    """Cues of a fixed length, back to back, whatever the speakers do."""
    length = rng.choice([3.0, 3.5, 4.0])
    cues: list[tuple[float, float, str]] = []
    words = _words(lines)
    at, index = 0.0, 0
    while index < len(words):
        chunk = []
        while index < len(words) and words[index][0] < at + length:
            chunk.append(words[index][1])
            index += 1
        if chunk:
            cues.append((at, at + length, " ".join(chunk)))
        at += length
    return _vtt(cues)


def youtube(lines: Sequence[SpokenLine], music: list[tuple[float, float]], rng: random.Random) -> str:
    """yt-dlp's auto-captions: caption lines of up to ~6 words, each shown under the line before."""
    tokens = [(a, "".join(ch for ch in w.lower() if ch.isalnum() or ch == "'")) for a, w in _words(lines)]
    events = [(a, [(a, "[Music]")]) for a, _ in music]  # a [Music] line of its own
    group: list[tuple[float, str]] = []
    for at, word in tokens:
        if group and (len(group) >= rng.randint(5, 7) or at - group[-1][0] > 1.5):
            events.append((group[0][0], group))
            group = []
        group.append((at, word))
    if group:
        events.append((group[0][0], group))
    events.sort(key=lambda event: event[0])
    cues, shown = [], " "
    for number, (start, group) in enumerate(events):
        end = events[number + 1][0] - 0.01 if number + 1 < len(events) else group[-1][0] + 1.0
        first, rest = group[0][1], group[1:]
        timed = first + "".join(f"<{_ts(at)}><c> {word}</c>" for at, word in rest)
        cues.append((start, end, f"{shown}\n{timed}"))
        finished = " ".join(word for _, word in group)
        shown = " " if finished == "[Music]" else finished
        cues.append((end, end + 0.01, f"{shown}\n "))  # the 10 ms snapshot
    body = "\n".join(f"{_ts(a)} --> {_ts(b)} align:start position:0%\n{text}\n" for a, b, text in cues)
    return f"WEBVTT\nKind: captions\nLanguage: en\n\n{body}"


def srt(lines: Sequence[SpokenLine], music: list[tuple[float, float]], rng: random.Random) -> str:
    cues = [(a, b, "♪ ♪") for a, b in music]
    for line, nxt in _paired(lines, rng, 0.5):
        if nxt:
            cues.append((line.start, nxt.end, f"- {line.text}\n- {nxt.text}"))
        else:
            cues.append((line.start, line.end, f"<i>{line.text}</i>" if rng.random() < 0.1 else line.text))
    cues.sort(key=lambda cue: cue[0])
    blocks = [f"{n}\n{_ts(a, True)} --> {_ts(b, True)}\n{text}\n" for n, (a, b, text) in enumerate(cues, 1)]
    return "\n".join(blocks).replace("\n", "\r\n")


WRITERS = {"voice": voice, "dash": dash, "youtube": youtube, "continuous": continuous, "none": none, "srt": srt}


def write(lines: Sequence[SpokenLine], music: list[tuple[float, float]], shape: str, seed: int = 0) -> str:
    """The film's subtitles in one shape (times from the ground truth)."""
    return WRITERS[shape](lines, music, random.Random(seed * 31 + SHAPES.index(shape)))
