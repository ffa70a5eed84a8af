"""The stand-in engines' calibrations kept between starts: the figures measured, never synthesized again."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from bench_py.audio import read_wav_file
from bench_py.standins import engines


def _figures(engine) -> list[tuple]:
    return [(c.voice, c.settings, c.f0s, c.natural_f0, [round(float(f), 6) for f in c.formants]) for c in
            engine._calibrations]  # fmt: skip


@pytest.mark.parametrize("name", ["espeak-ng", "flite"])
def test_a_kept_calibration_is_the_measured_one_and_needs_no_engine(name, tmp_path, monkeypatch):
    monkeypatch.setenv(engines.CALIBRATION_DIR_ENV, str(tmp_path / "kept"))
    measured = engines.make_engine(name)
    asyncio.run(measured.prepare())
    (kept_file,) = (tmp_path / "kept").glob(f"{name}-*.json")

    async def no_engine(*_args, **_kwargs):
        raise AssertionError("the engine ran again")

    monkeypatch.setattr(engines, "_run_collect", no_engine)
    kept = engines.make_engine(name)
    asyncio.run(kept.prepare())
    assert _figures(kept) == _figures(measured) and len(_figures(kept)) >= 2
    reference = tmp_path / "reference.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", engines.CALIBRATION_TEXT, "-o", str(reference)], check=True)
    pcm = read_wav_file(str(reference))
    assert kept.condition(pcm) == measured.condition(pcm)

    kept_file.write_text("{not json")  # unreadable: measured again (here, the engine that may not run)
    with pytest.raises(AssertionError, match="ran again"):
        asyncio.run(engines.make_engine(name).prepare())


def test_the_key_is_what_the_figures_come_from_and_nothing_is_kept_unasked(tmp_path, monkeypatch):
    monkeypatch.delenv(engines.CALIBRATION_DIR_ENV, raising=False)
    assert engines._calibration_file("espeak-ng", "espeak-ng", [1]) is None
    monkeypatch.setenv(engines.CALIBRATION_DIR_ENV, str(tmp_path))
    one = engines._calibration_file("espeak-ng", "espeak-ng", [("en-us+f1",), (10.0, 50.0)])
    assert one == engines._calibration_file("espeak-ng", "espeak-ng", [("en-us+f1",), (10.0, 50.0)])
    assert one != engines._calibration_file("espeak-ng", "espeak-ng", [("en-us+f1",), (10.0, 60.0)])
    assert one != engines._calibration_file("espeak-ng", "flite", [("en-us+f1",), (10.0, 50.0)])  # another version
