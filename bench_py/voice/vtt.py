"""Subtitles as they are written — WebVTT to the spec, and SRT — and what they say about speakers.

Reading is left to two well-kept libraries: webvtt-py reads each WebVTT block (timings, cue
settings, NOTE/STYLE/REGION blocks, a line of spaces inside a cue), srt reads SubRip. This module
is the thin layer they lack: it names the line of anything wrong, and reports the blocks a
player would drop silently (docs/extraction.md compares them with pysubs2 on each shape).

The speaker markup found decides how speakers are found:

* ``voice`` — ``<v Speaker>`` spans (anywhere in a cue, several per cue, ``</v>`` optional,
  classes as in ``<v.loud Name>``): speakers are named;
* ``dash`` — ``- `` turns, several speakers in one cue, no names;
* ``youtube`` — yt-dlp's YouTube auto-captions: each new line's words with inline times, the
  line above repeated as it rolls up, 10 ms snapshot cues between: the spoken lines are rebuilt
  from the word times;
* ``continuous`` — plain cues that run back to back and cut sentences: a cue boundary says
  nothing about who speaks;
* ``none`` — plain cues, a line or two each (the usual case for real films).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import srt
import webvtt
from webvtt.vtt import parse_item

MAX_BYTES = 64 * 1024 * 1024  # a subtitle file is kilobytes; anything this big is not one
VOICE_TAG = re.compile(r"<v(?:\.[^\s>]+)?(?:\s+([^>]*))?>", re.IGNORECASE)
_TIMESTAMP = r"(?:\d{1,3}:)?\d{2}:\d{2}[.,]\d{3}"
INLINE_TIME = re.compile(rf"<({_TIMESTAMP})>")
ANY_TAG = re.compile(rf"</?[a-zA-Z][^>]*>|<{_TIMESTAMP}>|\{{\\[^}}]*\}}")
# Music and sound descriptions: no clip may overlap them.
MUSIC = re.compile(r"♪|^\s*[\[(][^\])]*[\])]\s*$", re.IGNORECASE)
_SRT_TIMING = re.compile(rf"\s*({srt.RGX_TIMESTAMP}) *-[ -] *> *({srt.RGX_TIMESTAMP})")
_SRT_STAMP = re.compile(r"\d+[,.:][0-5]\d[,.:][0-5]\d(?:[,.:]\d{1,3})?")  # srt itself takes 00:61:00
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # WebVTT's line terminators (and SRT's)
_SENTENCE_END = re.compile(r"[.?!…:;\"'”’♪\])-]\s*$")
SNAPSHOT_S = 0.05  # yt-dlp's rolling snapshot cues last 10 ms
#: Formats whose cue boundaries are not speaker turns: speech is followed across them.
STREAM_FORMATS = ("youtube", "continuous")


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
    music: list[tuple[float, float]] = field(default_factory=list)  # music and sound descriptions
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    syntax: str = "webvtt"  # webvtt | srt

    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns if t.speaker})


def decode(data: bytes, name: str = "subtitles") -> str:
    if len(data) > MAX_BYTES:
        raise VttError(f"{name} is {len(data) / 1e6:.0f} MB: not a subtitle file (limit {MAX_BYTES // 2**20} MiB)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise VttError(f"{name} line {line}: not UTF-8 (byte {error.start}); convert it with iconv -t UTF-8") from None


def _blocks(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of each block as the WebVTT parser collects them: only an empty
    line ends a block (a line of spaces is cue text), and a line holding ``-->`` starts a new
    block unless it can be this block's timing line (its first, or its second after an id)."""
    block: list[str] = []
    first = 0
    for number, line in enumerate(lines, start=1):
        if not line:
            if block:
                yield first, block
                block = []
            continue
        if block and "-->" in line and (first == 1 or len(block) > 1 or "-->" in block[0]):
            yield first, block
            block = []
        if not block:
            first = number
        block.append(line)
    if block:
        yield first, block


def _webvtt_cues(lines: list[str], name: str) -> tuple[list[Cue], list[tuple[int, str]]]:
    cues: list[Cue] = []
    skipped: list[tuple[int, str]] = []
    for first, block in _blocks(lines):
        if first == 1:
            continue  # the header: WEBVTT and metadata lines (Kind:, Language:)
        arrow = next((i for i, line in enumerate(block) if "-->" in line), None)
        if arrow is None:
            if not block[0].startswith(("NOTE", "STYLE", "REGION")):
                skipped.append((first, "text outside any cue (a blank line inside a cue?): ignored, as players do"))
            continue
        line_no = first + arrow
        caption = parse_item(block, seen_cue=bool(cues))
        if not isinstance(caption, webvtt.Caption):
            raise VttError(
                f"{name} line {line_no}: malformed cue timing {block[arrow].strip()[:60]!r}; "
                "write it as 'HH:MM:SS.mmm --> HH:MM:SS.mmm' (hours optional)"
            )
        start, end = caption.start_time.in_milliseconds() / 1000, caption.end_time.in_milliseconds() / 1000
        cues.append(Cue(start, end, caption.raw_text, line_no))
    return cues, skipped


def _srt_cues(text: str, lines: list[str], name: str) -> list[Cue]:
    timings = _srt_timings(lines, name)
    try:
        subtitles = list(srt.parse(text))
    except srt.SRTParseError as error:
        unmatched = error.unmatched_content
        at = error.expected_start + len(unmatched) - len(unmatched.lstrip())
        line = len(_LINE_BREAK.split(text[:at]))
        found = unmatched.strip().splitlines()[0][:60] if unmatched.strip() else ""
        raise VttError(
            f"{name} line {line}: not an SRT cue ({found!r}); a cue is a number, a "
            "'HH:MM:SS,mmm --> HH:MM:SS,mmm' line, then its text"
        ) from None
    except srt.TimestampParseError as error:
        raise VttError(f"{name}: {error}; fix the timing line") from None
    cues, at = [], 0
    for subtitle in subtitles:
        start, end = subtitle.start.total_seconds(), subtitle.end.total_seconds()
        while at < len(timings) and (timings[at][1], timings[at][2]) != (start, end):
            at += 1
        line_no = timings[at][0] if at < len(timings) else 0
        at += 1
        cues.append(Cue(start, end, subtitle.content, line_no))
    return cues


def _srt_timings(lines: list[str], name: str) -> list[tuple[int, float, float]]:
    """(line, start, end) of every SRT timing line, in order; a malformed one is an error."""
    timings = []
    for number, line in enumerate(lines, start=1):
        match = _SRT_TIMING.match(line)
        if match or "-->" in line:  # srt would read a broken timing line as the text of the cue above
            if not match or not all(_SRT_STAMP.fullmatch(stamp) for stamp in match.groups()):
                raise VttError(
                    f"{name} line {number}: malformed cue timing {line.strip()[:60]!r}; write it as "
                    "'HH:MM:SS,mmm --> HH:MM:SS,mmm' (minutes and seconds under 60)"
                )
            a, b = (srt.srt_timestamp_to_timedelta(g).total_seconds() for g in match.groups())
            timings.append((number, a, b))
    return timings


def parse_cues(text: str, name: str = "subtitles") -> tuple[list[Cue], list[tuple[int, str]], str]:
    """The cues (with the line of each timing line), the skipped (line, why), and the syntax."""
    text = text.removeprefix("\ufeff")
    lines = _LINE_BREAK.split(text)
    if lines[0].startswith("WEBVTT"):
        cues, skipped = _webvtt_cues(lines, name)
        syntax = "webvtt"
    elif _SRT_TIMING.match(next((line for line in lines if line.strip() and not line.strip().isdigit()), "")):
        cues, skipped, syntax = _srt_cues(text, lines, name), [], "srt"
    else:
        raise VttError(
            f"{name} line 1: neither WebVTT (a file that starts with 'WEBVTT') nor SRT (a cue number, then a "
            f"'HH:MM:SS,mmm --> HH:MM:SS,mmm' line); found {lines[0][:40]!r}"
        )
    kept = []
    for cue in cues:
        if cue.end <= cue.start:
            skipped.append((cue.line, f"the cue ends ({cue.end:.3f} s) before it starts ({cue.start:.3f} s)"))
        elif not cue.text.strip():
            skipped.append((cue.line, "empty cue"))
        else:
            kept.append(cue)
    return kept, skipped, syntax


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
        line = plain(raw)
        if line.startswith("-"):
            pieces.append((None, line.lstrip("- ")))
        elif pieces:  # a wrapped line continues the turn before it
            pieces[-1] = (None, f"{pieces[-1][1]} {line}")
        else:
            pieces.append((None, line))
    return _split_time(cue, pieces)


def _seconds(stamp: str) -> float:
    *hours, minutes, rest = stamp.replace(",", ".").split(":")
    return int(hours[0] if hours else 0) * 3600 + int(minutes) * 60 + float(rest)


def _youtube_turns(cues: list[Cue]) -> tuple[list[Turn], list[tuple[float, float]], list[tuple[int, str]]]:
    """Spoken lines rebuilt from yt-dlp's word times. Each cue shows the line before (already
    heard) above the new one; the 10 ms cues between are snapshots of the finished line."""
    words: list[tuple[float, str, int]] = []  # (start, text, line) of each timed word or untimed row
    ends: list[float] = []  # the cue's end: no word of it lasts longer
    music: list[tuple[float, float]] = []
    skipped: list[tuple[int, str]] = []
    shown = ""  # the line on screen, rolled up into the next cue
    for cue in cues:
        if cue.end - cue.start < SNAPSHOT_S:
            skipped.append((cue.line, "a 10 ms snapshot of the line before (yt-dlp auto-captions)"))
            continue
        rows = [row for row in cue.text.split("\n") if row.strip()]
        if len(rows) > 1 and plain(rows[0]) == shown:
            rows = rows[1:]  # the rolled-up repeat
        elif rows and plain(rows[0]) == shown and not INLINE_TIME.search(rows[0]):
            skipped.append((cue.line, "repeats the line before (yt-dlp auto-captions)"))
            continue
        for row in rows:
            if MUSIC.search(plain(row)):
                music.append((cue.start, cue.end))
                continue
            pieces = INLINE_TIME.split(row)  # text, time, text, time, text...
            stamps = [cue.start] + [_seconds(p) for p in pieces[1::2]]
            for at, piece in zip(stamps, pieces[0::2], strict=True):
                if plain(piece):
                    words.append((at, plain(piece), cue.line))
                    ends.append(cue.end)
        shown = plain(rows[-1]) if rows else shown
    turns: list[Turn] = []
    current: list[tuple[float, str, int]] = []
    last_end = 0.0
    for index, (at, text, line) in enumerate(words):
        nxt = words[index + 1][0] if index + 1 < len(words) else ends[index]
        # A word lasts until the next one starts, or about as long as it takes to say it.
        end = min(nxt, ends[index], at + 0.35 + 0.07 * len(text))
        if current and at - last_end > 0.3:
            turns.append(Turn(current[0][0], last_end, " ".join(w for _, w, _ in current), None, current[0][2]))
            current = []
        current.append((at, text, line))
        last_end = max(end, at + 0.05)
    if current:
        turns.append(Turn(current[0][0], last_end, " ".join(w for _, w, _ in current), None, current[0][2]))
    return turns, music, skipped


def _is_continuous(spoken: list[Cue]) -> tuple[bool, str]:
    """Cues that run back to back and end mid-sentence were cut by time, not by speaker."""
    if len(spoken) < 4:
        return False, ""
    ordered = sorted(spoken, key=lambda c: c.start)
    touching = sum(abs(b.start - a.end) <= 0.05 for a, b in pairwise(ordered))
    cut = sum(not _SENTENCE_END.search(plain(c.text)) for c in ordered)
    share_touching, share_cut = touching / (len(ordered) - 1), cut / len(ordered)
    found = share_touching >= 0.6 and share_cut >= 0.3
    return found, f"{share_touching:.0%} of cues run back to back and {share_cut:.0%} end mid-sentence"


def detect(cues: list[Cue]) -> tuple[str, str]:
    """The subtitles' format and the reason it was chosen."""
    spoken = [c for c in cues if not MUSIC.search(plain(c.text))]
    n = len(spoken) or 1
    voiced = [c for c in spoken if VOICE_TAG.search(c.text)]
    if voiced:
        return "voice", f"{len(voiced)} of {n} cues carry <v Speaker> voice spans (first at line {voiced[0].line})"
    timed = [c for c in spoken if INLINE_TIME.search(c.text)]
    if len(timed) >= max(1, n // 10):
        return "youtube", (
            f"{len(timed)} of {n} cues carry inline word times (first at line {timed[0].line}), as yt-dlp writes "
            "YouTube auto-captions: spoken lines rebuilt from the word times, no speaker markers"
        )
    dashed = [c for c in spoken if sum(plain(line).startswith("- ") for line in c.text.split("\n")) >= 2]
    if dashed and len(dashed) >= max(1, n // 20):
        first = dashed[0].line
        return "dash", f"{len(dashed)} of {n} cues hold '- ' dash turns of several speakers (first at line {first})"
    continuous, why = _is_continuous(spoken)
    if continuous:
        return "continuous", f"{why}: cut by time, not by speaker; speech is followed across cues and clustered"
    return "none", f"no speaker markers in {n} cues: speech is segmented by silence and speakers are clustered"


def read(path: Path) -> Subtitles:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VttError(f"cannot read {path}: {error.strerror}") from None
    return parse(decode(data, path.name), path.name)


def parse(text: str, name: str = "subtitles") -> Subtitles:
    cues, skipped, syntax = parse_cues(text, name)
    if not cues:
        where = f" (line {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise VttError(f"{name}: no cues with text{where}")
    kind, reason = detect(cues)
    music = [(c.start, c.end) for c in cues if MUSIC.search(plain(c.text))]
    spoken = [c for c in cues if not MUSIC.search(plain(c.text))]
    if kind == "voice":
        turns = [t for c in spoken for t in _voice_turns(c)]
    elif kind == "dash":
        turns = [t for c in spoken for t in _dash_turns(c)]
    elif kind == "youtube":
        turns, music, more = _youtube_turns(cues)
        skipped += more
    else:
        turns = [Turn(c.start, c.end, plain(c.text), None, c.line) for c in spoken if plain(c.text)]
    return Subtitles(kind, reason, turns, music, skipped, syntax)
