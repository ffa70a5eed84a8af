"""The shared scorer against one reference: the figures of speaker_similarity, the reference embedded once."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bench_py.audio import Pcm, read_wav_file
from bench_py.judge import similarity


def _speech(tmp_path, voice: str, text: str) -> Pcm:
    path = tmp_path / f"{voice}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True)
    return read_wav_file(str(path))


def test_a_reference_scorer_gives_the_pairwise_figures_and_embeds_the_reference_once(tmp_path, monkeypatch):
    reference = _speech(tmp_path, "slt", "I kept thinking about the long walk home.")
    takes = [
        _speech(tmp_path, "slt", "Nobody wrote about the empty station."),
        _speech(tmp_path, "kal16", "Nobody wrote about the empty station."),
    ]
    expected = [similarity.speaker_similarity(take, reference) for take in takes]

    embedded: list[int] = []
    real_embed = similarity.embed
    monkeypatch.setattr(similarity, "embed", lambda pcm: embedded.append(len(pcm.samples)) or real_embed(pcm))
    scorer = similarity.ReferenceScorer(reference)
    got = [scorer(take) for take in takes]
    assert got == pytest.approx(expected, abs=1e-6)
    assert embedded.count(len(reference.samples)) == 1 and len(embedded) == 3
    assert got[0] > got[1]  # the reference's own voice is the nearer one
    quiet = Pcm(np.zeros(8000, dtype=np.int16), 16_000)
    batch = scorer.score_many([*takes, quiet])
    assert batch[:2] == pytest.approx(expected, abs=1e-5) and "under 0.5 s of speech" in str(batch[2])


def test_a_reference_without_speech_says_so_at_every_score(tmp_path):
    quiet = Pcm(np.random.default_rng(0).integers(-300, 300, 4000).astype(np.int16), 16_000)  # 0.25 s
    scorer = similarity.ReferenceScorer(quiet)
    take = _speech(tmp_path, "slt", "Nobody wrote about the empty station.")
    for _ in range(2):
        with pytest.raises(ValueError, match=r"under 0\.5 s of speech"):
            scorer(take)
    assert scorer.score_many([take]) == ["the reference: the clip has under 0.5 s of speech after silence trimming"]
