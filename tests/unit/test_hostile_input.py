"""Hostile input, fuzzed: every parser meets what an attacker, a broken server or a half-written
file could give it, and answers with its own clear error — never another exception, a hang (each
example has a deadline) or a write outside the directory it was given.

Bounded for CI: at most 200 examples per target, derandomized so a failure reproduces.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench_py import documents
from bench_py.audio import AudioFormatError, decode_wav, wav_header
from bench_py.config.model import ConfigError, load
from bench_py.measure.decode import StreamDecodeError, make_decoder
from bench_py.voice import clips, extract, references, vtt

FUZZ = settings(
    max_examples=200,
    deadline=2000,  # ms per example: a parser that hangs fails here
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text that looks enough like subtitles to reach deep into the parser.
VTT_PIECES = st.sampled_from(
    [
        "WEBVTT\n\n", "\n\n", "00:00:01.000 --> 00:00:02.500\n", "00:01.000 --> 00:03.000 align:start\n",
        "99:99:99.999 --> 00:00:00.000\n", "<v Samantha>", "<v.loud Theodore>", "</v>", "- ", "<c>", "</c>",
        "<00:00:01.500>", "NOTE x\n", "STYLE\n", "Hello there.\n", "\ufeff", "\r\n", "-->", "<", ">", "&amp;",
        # yt-dlp auto-captions, SRT, regions: the shapes of docs/extraction.md
        " \n", "Kind: captions\nLanguage: en\n", "00:00:02.310 --> 00:00:02.320 align:start position:0%\n",
        "<00:00:00.880><c> kept</c>", "[Music]\n", "REGION\nid:x\n", "1\n", "00:00:01,000 --> 00:00:02,000\n",
        "{\\an8}", "X1:100 X2:600\n", "\r",
    ]
)  # fmt: skip


@FUZZ
@given(st.lists(st.one_of(VTT_PIECES, st.text(max_size=20)), max_size=60))
def test_subtitles_parse_or_say_why(pieces):
    text = "".join(pieces)
    try:
        subs = vtt.parse(text, "fuzz.vtt")
    except vtt.VttError as error:
        assert str(error)
        return
    assert subs.format in ("voice", "dash", "youtube", "continuous", "none") and subs.syntax in ("webvtt", "srt")
    for turn in subs.turns:
        assert turn.end >= turn.start >= 0


GOOD_CUES = st.lists(
    st.tuples(st.integers(0, 3500), st.integers(1, 8), st.sampled_from(["Hello there.", " ", "<v Sam>Hi", "- Go."])),
    min_size=1,
    max_size=12,
)
BAD_TIMINGS = st.sampled_from(
    ["00:00:0x.000 --> 00:00:04.000", "00:61:00.000 --> 01:00:00.000", "1.5 --> 2.5",
     "00:00:01.000 -> 00:00:02.000 -->", "--> 00:00:02.000", "00:00:01.000 --> soon"]
)  # fmt: skip


def _timestamp(seconds: int, comma: bool) -> str:
    stamp = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.000"
    return stamp.replace(".", ",") if comma else stamp


@FUZZ
@given(GOOD_CUES, BAD_TIMINGS, st.integers(0, 12), st.booleans(), st.booleans())
def test_a_malformed_timing_line_is_an_error_naming_its_line(cues, bad, where, srt, crlf):
    """Wherever a malformed timing line sits among good cues, in WebVTT or SRT, the error names it."""
    blocks = [
        f"{n + 1}\n{_timestamp(a, srt)} --> {_timestamp(a + d, srt)}\n{text}\n" for n, (a, d, text) in enumerate(cues)
    ]
    blocks.insert(min(where, len(blocks)), f"{len(blocks) + 1}\n{bad.replace('.', ',') if srt else bad}\nbroken\n")
    text = ("" if srt else "WEBVTT\n\n") + "\n".join(blocks)
    lines = text.split("\n")
    bad_line = next(n for n, line in enumerate(lines, 1) if line.startswith(bad.replace(".", ",") if srt else bad))
    wanted = {bad_line, bad_line - 1}  # SRT names the block, which starts at its number
    if crlf:
        text = text.replace("\n", "\r\n")
    with pytest.raises(vtt.VttError) as caught:
        vtt.parse(text, "film.srt" if srt else "film.vtt")
    named = int(str(caught.value).split(" line ")[1].split(":")[0])
    assert named in wanted, (str(caught.value), bad_line)


@FUZZ
@given(st.binary(max_size=4096))
def test_subtitle_bytes_decode_or_say_why(data):
    with contextlib.suppress(vtt.VttError):
        vtt.decode(data, "fuzz.vtt")


def _wav(rate: int, channels: int, bits: int, data: bytes, declared: int | None) -> bytes:
    size = len(data) if declared is None else declared
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", (36 + size) & 0xFFFFFFFF)  # a huge declared size wraps, as in a hostile file
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", size)
        + data
    )


@FUZZ
@given(
    st.integers(0, 400_000),
    st.integers(0, 3),
    st.sampled_from([0, 8, 16, 24, 32]),
    st.binary(max_size=2048),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.integers(0, 60),
)
def test_wav_files_decode_or_say_why(rate, channels, bits, data, declared, truncate):
    blob = _wav(rate, channels, bits, data, declared)
    for candidate in (blob, blob[: len(blob) - truncate], blob[:truncate]):
        try:
            pcm = decode_wav(candidate)
        except AudioFormatError as error:
            assert str(error)
            continue
        assert pcm.rate > 0 and pcm.samples.dtype == np.int16


@FUZZ
@given(
    st.sampled_from(["pcm", "wav"]),
    st.booleans(),
    st.sampled_from(["s16le", "f32le"]),
    st.lists(st.binary(max_size=700), max_size=12),
)
def test_audio_streams_decode_or_say_why(response_format, sse, sample_format, chunks):
    decoder = make_decoder(response_format, sse, sample_format)
    try:
        for chunk in chunks:
            samples = decoder.feed(chunk)
            assert samples.dtype == np.int16
    except StreamDecodeError as error:
        assert str(error)


SSE_EVENTS = st.one_of(
    st.builds(
        lambda audio, key: json.dumps({"type": "speech.audio.delta", key: audio}),
        st.one_of(st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=30)),
        st.sampled_from(["audio", "audio_data", "delta"]),
    ),
    st.just(json.dumps({"type": "speech.audio.done"})),
    st.just(json.dumps({"type": "error", "error": {"message": "boom"}})),
    st.text(max_size=40),
)


@FUZZ
@given(st.lists(SSE_EVENTS, max_size=10), st.integers(1, 50), st.sampled_from(["s16le", "f32le"]))
def test_sse_streams_with_bad_json_or_base64_fail_clearly(events, cut, sample_format):
    body = "".join(f"data: {event}\n\n" for event in events).encode()
    decoder = make_decoder("pcm", True, sample_format)
    try:
        for start in range(0, len(body), cut):  # split anywhere, as a network would
            decoder.feed(body[start : start + cut])
    except StreamDecodeError as error:
        assert str(error)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@FUZZ
@given(st.sampled_from(documents.KINDS), st.one_of(JSON_VALUES, st.text(max_size=200)), st.integers(0, 100))
def test_run_files_read_or_name_the_field(kind, value, truncate):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file.json"
        text = value if isinstance(value, str) else json.dumps(value)
        path.write_text(text[: max(0, len(text) - truncate)] if truncate % 3 == 0 else text)
        try:
            if kind in documents.LOGS:
                documents.read_records(kind, path)
            else:
                documents.read(kind, path)
        except documents.RunFileError as error:
            assert str(error)


CONFIG_KEYS = st.sampled_from(
    [
        ("bench", "repetitions"), ("bench", "utterances"), ("candidate", "port"), ("candidate", "install_paths"),
        ("candidate", "name"), ("cotenant", "gate"), ("rule", "min_scores"), ("profile",), ("gemma_mode",),
        ("candidate", "launch", "flags_by_version"), ("paths", "token_file"), ("bench", "load", "concurrency_limit"),
    ]
)  # fmt: skip


@FUZZ
@given(CONFIG_KEYS, JSON_VALUES)
def test_configuration_values_are_accepted_or_name_the_key(key, value):
    override: dict = value
    for part in reversed(key):
        override = {part: override}
    override.setdefault("gemma_mode", "parallel")
    try:
        load(override)
    except ConfigError as error:
        assert str(error)


HOSTILE_NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["../../etc/passwd", "..", ".", "/abs", "a/../../b", "x;rm -rf ~", "$(touch pwned)", "`id`", "a\x00b",
         "name with space", "-rf", "C:\\x", "ok-name.v1"]
    ),
)  # fmt: skip


@FUZZ
@given(HOSTILE_NAMES)
def test_speaker_and_clip_names_never_leave_their_directory(name):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store, outside = root / "voice-references", root / "outside-marker"
        clip = root / "clip.wav"
        clip.write_bytes(wav_header(16000, 32000) + bytes(32000))
        try:
            references.add_confirmed(store, name, clip, "fuzz")
        except references.ReferenceError as error:
            assert str(error)
        try:
            target = clips.inside(store, name)
            assert target.parent == store.resolve()
        except extract.ExtractError as error:
            assert str(error)
        except ValueError:  # a NUL byte: the OS itself refuses the path
            assert "\x00" in name
        written = {p.resolve() for p in root.rglob("*")}
        assert all(p == clip.resolve() or store.resolve() in (p, *p.parents) for p in written), written
        assert not outside.exists()


@FUZZ
@given(st.floats(0, 1e7, allow_nan=False), st.floats(0, 1e7, allow_nan=False))
def test_clip_names_are_integers_only(start, end):
    taken: set[str] = set()
    first, second = clips.clip_name(start, end, taken), clips.clip_name(start, end, taken)
    import re

    assert re.fullmatch(r"\d+-\d+\.wav", first) and re.fullmatch(r"\d+-\d+-2\.wav", second)


@pytest.mark.parametrize("size", [0, 1, 43])
def test_truncated_headers_are_clear_errors(size):
    with pytest.raises(AudioFormatError):
        decode_wav(wav_header(24000, 0)[:size])


def test_a_complete_header_with_no_samples_is_empty_audio():
    assert len(decode_wav(wav_header(24000, 0)).samples) == 0
