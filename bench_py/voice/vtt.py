"""WebVTT subtitles: a strict parser that names the line of any error, and format detection.

Films' subtitles come in four shapes, and the one found decides how speakers are found:

* ``voice`` — ``<v Speaker>`` spans (anywhere in a cue, several per cue, ``</v>`` optional,
  classes as in ``<v.loud Name>``): speakers are named;
* ``dash`` — ``- `` turns, several speakers in one cue, no names;
* ``youtube`` — yt-dlp's YouTube auto-subtitles: inline ``<00:00:01.000>`` word timestamps,
  ``<c>`` tags, and each line repeated as it rolls up;
* ``none`` — no speaker markers at all (the usual case for real films).

Our own parser rather than webvtt-py: that library truncates times to whole seconds and skips
malformed cues silently, while an error here must name its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 64 * 1024 * 1024  # a subtitle file is kilobytes; anything this big is not one
_TIME = r"(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)[.,](\d{3})"
TIMING = re.compile(rf"^{_TIME}\s+-->\s+{_TIME}(?:\s+.*)?$")
VOICE_TAG = re.compile(r"<v(?:\.[^\s>]+)?(?:\s+([^>]*))?>", re.IGNORECASE)
INLINE_TIME = re.compile(r"<(?:\d{1,3}:)?\d{2}:\d{2}[.,]\d{3}>")
ANY_TAG = re.compile(r"</?[a-zA-Z][^>]*>|<(?:\d{1,3}:)?\d{2}:\d{2}[.,]\d{3}>")
MUSIC = re.compile(r"♪|\[\s*music\s*\]|\(\s*music\s*\)", re.IGNORECASE)


class VttError(ValueError):
    """The subtitles cannot be read; the message names the line."""


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # raw payload, tags included
    line: int  # line of the timing line


@dataclass(frozen=True)
class Turn:
    """One speaker's stretch of speech as the subtitles tell it."""

    start: float
    end: float
    text: str
    speaker: str | None  # None: the subtitles do not name it
    line: int


@dataclass
class Subtitles:
    format: str
    reason: str
    turns: list[Turn]
    music: list[tuple[float, float]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)

    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns if t.speaker})


def _seconds(groups: tuple[str | None, ...]) -> float:
    hours, minutes, seconds, millis = groups
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def decode(data: bytes, name: str = "subtitles") -> str:
    if len(data) > MAX_BYTES:
        raise VttError(f"{name} is {len(data) / 1e6:.0f} MB: not a subtitle file (limit {MAX_BYTES // 2**20} MiB)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise VttError(f"{name} line {line}: not UTF-8 (byte {error.start}); convert it with iconv -t UTF-8") from None


def parse_cues(text: str, name: str = "subtitles") -> tuple[list[Cue], list[tuple[int, str]]]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or not lines[0].startswith("WEBVTT"):
        raise VttError(f"{name} line 1: a WebVTT file starts with 'WEBVTT', found {lines[0][:40]!r}")
    cues: list[Cue] = []
    skipped: list[tuple[int, str]] = []
    index = 1
    while index < len(lines) and lines[index].strip():  # header lines (Kind:, Language:) end at a blank line
        index += 1
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        block_start = index
        block = []
        while index < len(lines) and lines[index].strip():
            block.append(lines[index])
            index += 1
        head = block[0]
        if head.startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing_at = 0 if "-->" in head else 1
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            raise VttError(f"{name} line {block_start + 1}: a cue needs a timing line 'HH:MM:SS.mmm --> HH:MM:SS.mmm'")
        match = TIMING.match(block[timing_at].strip())
        line_no = block_start + timing_at + 1
        if not match:
            raise VttError(f"{name} line {line_no}: malformed cue timing {block[timing_at].strip()[:60]!r}")
        start, end = _seconds(match.groups()[:4]), _seconds(match.groups()[4:])
        payload = "\n".join(block[timing_at + 1 :])
        if end <= start:
            skipped.append((line_no, f"the cue ends ({end:.3f} s) before it starts ({start:.3f} s)"))
            continue
        if not payload.strip():
            skipped.append((line_no, "empty cue"))
            continue
        cues.append(Cue(start, end, payload, line_no))
    return cues, skipped


def plain(text: str) -> str:
    """Cue text without tags or inline timestamps, whitespace collapsed."""
    return " ".join(ANY_TAG.sub(" ", text).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").split())


def _split_time(cue: Cue, pieces: list[tuple[str | None, str]]) -> list[Turn]:
    """Share the cue's time among its turns in proportion to their text (what a reader does)."""
    pieces = [(who, text) for who, text in pieces if text]
    total = sum(len(text) for _, text in pieces) or 1
    turns, at = [], cue.start
    for who, text in pieces:
        span = (cue.end - cue.start) * len(text) / total
        turns.append(Turn(at, at + span, text, who, cue.line))
        at += span
    return turns


def _voice_turns(cue: Cue) -> list[Turn]:
    pieces: list[tuple[str | None, str]] = []
    position, speaker = 0, None
    for match in VOICE_TAG.finditer(cue.text):
        before = cue.text[position : match.start()]
        if plain(before):
            pieces.append((speaker, plain(before)))
        speaker = (match.group(1) or "").strip() or None
        position = match.end()
    rest = cue.text[position:]
    closing = rest.lower().find("</v>")
    if closing >= 0:
        pieces.append((speaker, plain(rest[:closing])))
        if plain(rest[closing + 4 :]):
            pieces.append((None, plain(rest[closing + 4 :])))
    else:
        pieces.append((speaker, plain(rest)))
    return _split_time(cue, pieces)


def _dash_turns(cue: Cue) -> list[Turn]:
    pieces: list[tuple[str | None, str]] = []
    for raw in cue.text.split("\n"):
        line = raw.strip()
        if line.startswith("-"):
            pieces.append((None, plain(line.lstrip("- "))))
        elif pieces:  # a wrapped line continues the turn before it
            pieces[-1] = (None, f"{pieces[-1][1]} {plain(line)}")
        else:
            pieces.append((None, plain(line)))
    return _split_time(cue, pieces)


def _youtube_turns(cues: list[Cue]) -> tuple[list[Turn], list[tuple[int, str]]]:
    """Keep only what each rolling cue adds: the line with inline timestamps; skip the 10 ms
    snapshot cues yt-dlp writes between them."""
    turns, skipped = [], []
    for cue in cues:
        lines = [line for line in cue.text.split("\n") if line.strip()]
        fresh = [line for line in lines if INLINE_TIME.search(line)]
        if cue.end - cue.start < 0.05:
            skipped.append((cue.line, "a rolling snapshot of the cue before (YouTube auto-subtitles)"))
            continue
        text = plain(" ".join(fresh)) if fresh else ""
        if not text:
            skipped.append((cue.line, "repeats the line before (YouTube auto-subtitles)"))
            continue
        turns.append(Turn(cue.start, cue.end, text, None, cue.line))
    return turns, skipped


def detect(cues: list[Cue]) -> tuple[str, str]:
    """The subtitles' format and the reason it was chosen."""
    spoken = [c for c in cues if not MUSIC.search(c.text)]
    n = len(spoken) or 1
    voiced = [c for c in spoken if VOICE_TAG.search(c.text)]
    if voiced:
        return "voice", f"{len(voiced)} of {n} cues carry <v Speaker> voice spans (first at line {voiced[0].line})"
    timed = [c for c in spoken if INLINE_TIME.search(c.text)]
    if len(timed) >= max(1, n // 10):
        return "youtube", (
            f"{len(timed)} of {n} cues carry inline word timestamps (first at line {timed[0].line}), as yt-dlp "
            "writes YouTube auto-subtitles: no speaker markers"
        )
    dashed = [c for c in spoken if sum(line.lstrip().startswith("- ") for line in c.text.split("\n")) >= 2]
    if dashed and len(dashed) >= max(1, n // 20):
        first = dashed[0].line
        return "dash", f"{len(dashed)} of {n} cues hold '- ' dash turns of several speakers (first at line {first})"
    return "none", f"no speaker markers in {n} cues: speech is segmented by silence and speakers are clustered"


def read(path: Path) -> Subtitles:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VttError(f"cannot read {path}: {error.strerror}") from None
    return parse(decode(data, path.name), path.name)


def parse(text: str, name: str = "subtitles") -> Subtitles:
    cues, skipped = parse_cues(text, name)
    if not cues:
        raise VttError(f"{name}: no cues with text")
    kind, reason = detect(cues)
    music = [(c.start, c.end) for c in cues if MUSIC.search(c.text)]
    spoken = [c for c in cues if not MUSIC.search(c.text)]
    if kind == "voice":
        turns = [t for c in spoken for t in _voice_turns(c)]
    elif kind == "dash":
        turns = [t for c in spoken for t in _dash_turns(c)]
    elif kind == "youtube":
        turns, more = _youtube_turns(spoken)
        skipped += more
    else:
        turns = [Turn(c.start, c.end, plain(c.text), None, c.line) for c in spoken if plain(c.text)]
    return Subtitles(kind, reason, turns, music, skipped)
