"""Subtitle parsing and format detection, on subtitles in the shapes people have."""

from pathlib import Path

import pytest

from bench_py.standins.film import Line
from bench_py.standins.film_subtitles import SHAPES
from bench_py.standins.film_subtitles import write as subtitles
from bench_py.voice import vtt
from bench_py.voice.clips import ExtractError, clip_name, inside

DATA = Path(__file__).resolve().parent.parent / "data" / "subtitles"

VOICE = """WEBVTT

1
00:00:01.000 --> 00:00:04.000
<v.loud Samantha>Hello, are you there?</v> <v Theodore>I am.

00:00:05.000 --> 00:00:08.500 align:start
<i>Outside</i> <v Samantha>It's a beautiful day
"""


def test_voice_spans_with_and_without_closing_tags_and_classes():
    subs = vtt.parse(VOICE)
    assert subs.format == "voice" and "voice spans" in subs.reason
    assert [(t.speaker, t.text) for t in subs.turns] == [
        ("Samantha", "Hello, are you there?"),
        ("Theodore", "I am."),
        (None, "Outside"),
        ("Samantha", "It's a beautiful day"),
    ]
    first, second = subs.turns[:2]
    assert first.start == 1.0 and second.end == 4.0 and first.end == pytest.approx(second.start)
    assert first.end - first.start > second.end - second.start  # time shared by text length
    assert subs.speakers() == ["Samantha", "Theodore"]


def test_dash_turns_and_no_markers():
    dash = vtt.parse("WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n- Where are you?\n- Right here.\n\n"
                     "00:00:04.000 --> 00:00:05.000\nAlone now.\n")  # fmt: skip
    assert dash.format == "dash" and [t.text for t in dash.turns] == ["Where are you?", "Right here.", "Alone now."]
    none = vtt.parse("WEBVTT\n\n00:01.000 --> 00:02.000\nJust words.\n\n00:03.000 --> 00:04.000\n♪ music ♪\n")
    assert none.format == "none" and "no speaker markers" in none.reason
    assert none.music == [(3.0, 4.0)] and len(none.turns) == 1


# The shape yt-dlp writes for YouTube auto-captions (`--write-auto-subs --sub-format vtt`), as found
# in public repositories' fixtures: a line holding one space above the first words, the line
# before repeated above each new one, inline word times, 10 ms snapshot cues whose second line is
# one space, "[Music]" cues and an untimed one-word cue. The words are ours.
YT_DLP = (DATA / "yt-dlp.en.vtt").read_text(encoding="utf-8")


def test_yt_dlp_auto_captions_in_their_real_shape():
    subs = vtt.parse(YT_DLP, "her.en.vtt")
    assert subs.format == "youtube" and "inline word times" in subs.reason and subs.syntax == "webvtt"
    # Spoken lines from the word times: no line twice; a pause (04.0 -> 06.24) starts a new one.
    assert [(t.start, round(t.end, 2), t.text) for t in subs.turns] == [
        (0.64, 3.43, "I kept thinking about the long walk home"),
        (4.0, 4.7, "where"),
        (6.24, 7.04, "were you"),
        (12.84, 13.47, "okay"),
    ]
    assert subs.music == [(8.44, 12.83)]
    reasons = [why for _, why in subs.skipped]
    assert reasons.count("a 10 ms snapshot of the line before (yt-dlp auto-captions)") == 2
    assert reasons.count("empty cue") == 2  # the snapshots of nothing around the music
    # CRLF line ends and a byte order mark change nothing.
    crlf = vtt.decode(("\ufeff" + YT_DLP.replace("\n", "\r\n")).encode(), "her.en.vtt")
    assert vtt.parse(crlf).turns == subs.turns


SPEC = (DATA / "spec.vtt").read_text(encoding="utf-8")


def test_webvtt_to_the_spec_settings_blocks_ids_and_a_line_of_spaces():
    subs = vtt.parse(SPEC)
    assert subs.format == "voice"
    # The line of one space is cue text: the cue goes on to "I am here."
    assert [(t.speaker, t.text, t.line) for t in subs.turns] == [
        ("Samantha", "Hello, are you there? I am here.", 14),
        ("Theodore", "I am.", 20),
    ]
    assert (subs.turns[0].start, subs.turns[0].end) == (1.0, 4.0) and subs.skipped == []


SRT = (DATA / "film.srt").read_bytes().decode("utf-8")  # BOM and CRLF kept


def test_srt_with_bom_crlf_coordinates_and_ass_tags():
    assert SRT.startswith("\ufeff1\r\n")  # the file keeps its byte order mark and CRLF (.gitattributes)
    subs = vtt.parse(vtt.decode(SRT.encode(), "film.srt"), "film.srt")
    assert subs.syntax == "srt" and subs.format == "dash"
    assert [(t.text, t.line) for t in subs.turns] == [
        ("Where are you?", 2), ("Right here.", 6), ("Come closer.", 6), ("Alone now.", 11),
    ]  # fmt: skip
    plain_srt = SRT.replace("{\\an8}- Right here.\r\n- Come closer.", "Right here. Come closer.")
    assert vtt.parse(plain_srt).format == "none"


def test_cues_cut_at_fixed_intervals_are_followed_across():
    text = "WEBVTT\n\n" + "\n".join(
        f"00:00:{4 * i:02d}.000 --> 00:00:{4 * i + 4:02d}.000\n{words}\n"
        for i, words in enumerate(
            ["I never liked the long walk home and", "you didn't either. We kept", "thinking about the paper birds",
             "before the light came back. Where", "were you? Right here, with", "everything you said."]
        )
    )  # fmt: skip
    subs = vtt.parse(text)
    assert subs.format == "continuous" and "back to back" in subs.reason
    assert subs.format in vtt.STREAM_FORMATS and len(subs.turns) == 6


def test_backwards_and_empty_cues_are_skipped_with_reasons():
    subs = vtt.parse("WEBVTT\n\n00:00:05.000 --> 00:00:04.000\nbackwards\n\n00:00:06.000 --> 00:00:07.000\nfine\n")
    assert [t.text for t in subs.turns] == ["fine"]
    assert subs.skipped == [(3, "the cue ends (4.000 s) before it starts (5.000 s)")]


def test_non_utf8_and_huge_files_are_refused(tmp_path):
    with pytest.raises(vtt.VttError, match=r"film.vtt line 3: not UTF-8"):
        vtt.decode("WEBVTT\n\ncaf\xe9\n".encode("latin-1"), "film.vtt")
    with pytest.raises(vtt.VttError, match="not a subtitle file"):
        vtt.decode(b"x" * (vtt.MAX_BYTES + 1), "huge.vtt")
    (tmp_path / "bom.vtt").write_bytes("\ufeffWEBVTT\n\n00:01.000 --> 00:02.000\nhi\n".encode())
    assert vtt.read(tmp_path / "bom.vtt").turns[0].text == "hi"


def test_names_come_from_integers_and_stay_inside(tmp_path):
    taken: set[str] = set()
    assert [clip_name(12.3, 20.9, taken), clip_name(12.7, 20.1, taken), clip_name(12.0, 20.0, taken)] == [
        "12-20.wav", "12-20-2.wav", "12-20-3.wav",
    ]  # fmt: skip
    assert inside(tmp_path, "12-20.wav") == (tmp_path / "12-20.wav").resolve()
    for hostile in ("../x.wav", "/etc/passwd", "a/../../b.wav"):
        with pytest.raises(ExtractError, match="outside"):
            inside(tmp_path, hostile)


def test_the_film_stand_ins_subtitles_are_detected_as_written():
    lines = [Line(1.0 + 3 * i, 3.5 + 3 * i, s, f"Line number {i} is here.", False, False)
             for i, s in enumerate(["SAMANTHA", "THEODORE"] * 10)]  # fmt: skip
    expected = {"voice": "voice", "dash": "dash", "youtube": "youtube", "continuous": "continuous", "none": "none"}
    for shape in SHAPES:
        subs = vtt.parse(subtitles(lines, [(2.0, 4.0)], shape, seed=3))
        assert subs.format == expected.get(shape, subs.format) and subs.syntax == (
            "srt" if shape == "srt" else "webvtt"
        )
