"""WebVTT parsing and format detection, on hand-written subtitles."""

import pytest

from bench_py.standins.film import Line, subtitles
from bench_py.voice import vtt
from bench_py.voice.extract import ExtractError, clip_name, inside

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


def test_dash_turns_youtube_rolling_lines_and_no_markers():
    dash = vtt.parse("WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n- Where are you?\n- Right here.\n\n"
                     "00:00:04.000 --> 00:00:05.000\nAlone now.\n")  # fmt: skip
    assert dash.format == "dash" and [t.text for t in dash.turns] == ["Where are you?", "Right here.", "Alone now."]
    youtube = vtt.parse(
        "WEBVTT\nKind: captions\nLanguage: en\n\n"
        "00:00:01.000 --> 00:00:02.000\nhello<00:00:01.500><c> there</c>\n\n"
        "00:00:02.000 --> 00:00:02.010\nhello there\n \n\n"
        "00:00:02.010 --> 00:00:04.000\nhello there\nhow<00:00:02.500><c> are</c><00:00:03.000><c> you</c>\n"
    )
    assert youtube.format == "youtube" and "inline word timestamps" in youtube.reason
    assert [t.text for t in youtube.turns] == ["hello there", "how are you"]  # no line twice
    assert any("rolling snapshot" in why for _, why in youtube.skipped)
    none = vtt.parse("WEBVTT\n\n00:01.000 --> 00:02.000\nJust words.\n\n00:03.000 --> 00:04.000\n♪ music ♪\n")
    assert none.format == "none" and "no speaker markers" in none.reason
    assert none.music == [(3.0, 4.0)] and len(none.turns) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("00:00:01.000 --> 00:00:02.000\nno header\n", r"line 1: a WebVTT file starts with 'WEBVTT'"),
        (
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\n00:00:0x.000 --> 00:00:04.000\nbad\n",
            r"line 6: malformed cue",
        ),
        ("WEBVTT\n\nid-only\njust text\n", r"line 3: a cue needs a timing line"),
        ("WEBVTT\n\n", r"no cues with text"),
    ],
)
def test_malformed_subtitles_name_the_line(text, message):
    with pytest.raises(vtt.VttError, match=message):
        vtt.parse(text, "film.vtt")


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
    for kind in ("voice", "dash", "youtube", "none"):
        assert vtt.parse(subtitles(lines, [(2.0, 4.0)], kind, seed=3)).format == kind
