"""One ffmpeg for many takes gives what one ffmpeg per take gives: the blind session's clips byte
for byte, the proxies' loudness figure for figure, a broken take still named or metered alone.
Real ffmpeg, real takes of different lengths and levels (espeak-ng's voice, noise, silence)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench_py.audio import Pcm, write_wav_file
from bench_py.judge import ffmpeg, proxies, session


def one_per_take_clip(source: Path, target: Path) -> None:
    """The session's clip as it was made before batching: one ffmpeg per take."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source),
         "-af", "loudnorm=I=-23:TP=-2:LRA=11", "-ar", "24000", "-ac", "1", "-c:a", "pcm_s16le",
         "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(target)],
        check=True, capture_output=True,
    )  # fmt: skip


def one_per_take_loudness(path: Path) -> float | None:
    """The proxies' loudness as it was metered before batching: one ffmpeg per take, ``-af ebur128``."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-af", "ebur128", "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.findall(r"I:\s+(-?[\d.]+|-inf) LUFS", result.stderr) if result.returncode == 0 else []
    return None if not found or found[-1] == "-inf" else float(found[-1])


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> list[Path]:
    """Spoken takes at two rates and three levels, noise, and a silent take."""
    folder = tmp_path_factory.mktemp("takes")
    made = []
    for index, (text, rate, gain) in enumerate(
        [("The quick brown fox.", 22050, 1.0), ("Hello there, how are you today?", 24000, 0.2),
         ("One two three four five six.", 16000, 0.05), ("A short one.", 24000, 0.7)]
    ):  # fmt: skip
        raw = folder / f"raw{index}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        path = folder / f"take{index}.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw),
                        "-af", f"volume={gain}", "-ar", str(rate), str(path)], check=True)  # fmt: skip
        made.append(path)
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 3000, 24000 * 2)).clip(-32768, 32767).astype(np.int16)
    write_wav_file(str(folder / "noise.wav"), Pcm(noise, 24000))
    write_wav_file(str(folder / "silence.wav"), Pcm(np.zeros(24000, dtype=np.int16), 24000))
    return [*made, folder / "noise.wav", folder / "silence.wav"]


def test_batches_keep_order_split_evenly_and_cap_their_size():
    assert ffmpeg.batches([]) == []
    assert ffmpeg.batches([1, 2, 3], at_least=2) == [[1, 2], [3]]
    assert ffmpeg.batches(list(range(40)), at_least=2) == [list(range(20)), list(range(20, 40))]
    cut = ffmpeg.batches(list(range(100)))
    assert [x for batch in cut for x in batch] == list(range(100))
    assert all(0 < len(batch) <= ffmpeg.INPUTS_PER_PROCESS for batch in cut)


def test_the_sessions_clips_are_byte_for_byte_those_of_one_ffmpeg_per_take(takes, tmp_path):
    alone, batched = tmp_path / "alone", tmp_path / "batched"
    alone.mkdir(), batched.mkdir()
    for index, take in enumerate(takes):
        one_per_take_clip(take, alone / f"{index}.wav")
    session.normalize_clips([(take, batched / f"{index}.wav") for index, take in enumerate(takes)])
    for index in range(len(takes)):
        assert (batched / f"{index}.wav").read_bytes() == (alone / f"{index}.wav").read_bytes(), takes[index].name


def test_a_broken_take_among_others_is_named(takes, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    jobs = [(takes[0], tmp_path / "a.wav"), (broken, tmp_path / "b.wav"), (takes[1], tmp_path / "c.wav")]
    with pytest.raises(session.SessionError, match=r"ffmpeg could not normalize broken\.wav"):
        session.normalize_clips(jobs)


def test_loudness_is_figure_for_figure_that_of_one_ffmpeg_per_take(takes, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    alone = [one_per_take_loudness(take) for take in takes]
    assert all(isinstance(value, float) for value in alone[:5]), alone  # the spoken takes and the noise
    assert len(set(alone[:4])) == 4  # levels apart: a swapped figure would show
    assert proxies.loudness_many(list(takes)) == alone
    # A broken take in a batch: the batch is metered take by take, the broken one None.
    mixed = [takes[0], broken, *takes[1:]]
    assert proxies.loudness_many(mixed) == [alone[0], None, *alone[1:]]
