"""voxbench_extract: Phase A0's inputs refused with what to do. Ranking a real film (speech synthesis,
the speaker encoder) is the integration tests' part (tests/integration/test_extraction.py)."""

from __future__ import annotations

import numpy as np

from bench_py.audio import Pcm, write_wav_file
from tests.helpers import ROOT
from tests.unit.modules.utils import fail_module, load_module, run_module

extract_module = load_module("voxbench_extract")
SUBTITLES = ROOT / "tests" / "data" / "subtitles" / "spec.vtt"


def silent_film(path, seconds: float = 8.0):
    """A real audio file as long as the subtitles' cues, with nobody speaking in it."""
    write_wav_file(str(path), Pcm(np.zeros(int(16000 * seconds), dtype=np.int16), 16000))
    return path


def test_film_subtitles_and_out_dir_are_required():
    result = fail_module(extract_module, {"speaker": "Samantha"})
    assert result["msg"] == "missing required arguments: film, out_dir, subtitles"


def test_confirming_needs_the_references_name_and_store(tmp_path):
    args = {"film": "f.mp4", "subtitles": str(SUBTITLES), "out_dir": str(tmp_path / "out"), "confirm_rank": 2}
    result = fail_module(extract_module, args)
    assert result["msg"] == "missing parameter(s) required by 'confirm_rank': reference_name, references_dir"
    assert not (tmp_path / "out").exists()


def test_check_mode_is_not_supported_and_skips_before_writing(tmp_path):
    args = {"film": "f.mp4", "subtitles": str(SUBTITLES), "out_dir": str(tmp_path / "out")}
    result = run_module(extract_module, args, check_mode=True)
    assert result["skipped"] is True and "does not support check mode" in result["msg"]
    assert not (tmp_path / "out").exists()


def test_a_shortest_stretch_outside_1_to_15_s_is_refused(tmp_path):
    args = {"film": "f.mp4", "subtitles": str(SUBTITLES), "out_dir": str(tmp_path / "out"), "min_seconds": 0.5}
    assert fail_module(extract_module, args)["msg"] == "--min-seconds 0.5 is outside 1–15 s"


def test_missing_subtitles_fail_naming_the_file(tmp_path):
    missing = tmp_path / "her.en.vtt"
    args = {"film": str(silent_film(tmp_path / "film.wav")), "subtitles": str(missing), "out_dir": str(tmp_path / "o")}
    assert fail_module(extract_module, args)["msg"] == f"cannot read {missing}: No such file or directory"


def test_a_missing_film_fails_naming_it(tmp_path):
    film = tmp_path / "her.mp4"
    args = {"film": str(film), "subtitles": str(SUBTITLES), "out_dir": str(tmp_path / "out"), "speaker": "Samantha"}
    assert fail_module(extract_module, args)["msg"] == f"{film} does not exist"


def test_subtitles_whose_cues_fall_on_silence_are_said_not_to_belong_to_the_film(tmp_path):
    args = {
        "film": str(silent_film(tmp_path / "film.wav")),
        "subtitles": str(SUBTITLES),
        "out_dir": str(tmp_path / "out"),
        "speaker": "Samantha",
    }
    result = fail_module(extract_module, args)
    assert result["msg"] == "no speech where the subtitles have cues: do they belong to this film?"
    assert list((tmp_path / "out").iterdir()) == []  # no clip and no candidates.json
