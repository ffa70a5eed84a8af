"""Joined references, the summary of what was found, and the fast embeddings (real speech)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bench_py.audio import Pcm, read_wav_file
from bench_py.voice import findings, joined
from bench_py.voice.speech import Region


def _region(start: float, end: float, embedding: list[float], line: int = 1) -> Region:
    vector = np.array(embedding, dtype=np.float32)
    return Region(start, end, None, line, embedding=vector / np.linalg.norm(vector))


def test_joined_clips_take_the_most_like_pieces_that_agree_and_keep_the_film_order():
    target = np.array([1.0, 0.0, 0.0])
    her = [_region(10.0 * i, 10.0 * i + 2.5, [1.0, 0.05 * i, 0.0], i) for i in range(8)]
    sister = [_region(200.0 + 10 * i, 202.5 + 10 * i, [0.8, 0.0, 0.6]) for i in range(3)]  # 0.8: not close enough
    pool = joined.likely(her + sister, target)
    assert all(r.similarity >= pool[0].similarity - joined.SIMILAR_BELOW_BEST for r in pool)
    assert not any(r in sister for r in pool)
    clips = joined.groups(pool, count=2, min_s=5.0, max_s=15.0)
    assert len(clips) == 2
    for clip in clips:
        spans = [[r.start, r.end] for r in clip]
        assert spans == sorted(spans) and 5.0 <= joined.duration(spans) <= 15.0
    used = [id(r) for clip in clips for r in clip]
    assert len(used) == len(set(used))  # no piece in two clips
    assert joined.groups(pool[:1], count=2, min_s=5.0, max_s=15.0) == []  # one 2.5 s piece makes no reference


def test_the_filter_graph_fades_every_piece_and_puts_silence_between():
    graph = joined.filter_graph([[1.0, 3.5], [7.0, 9.0]], 24_000)
    assert graph.count("afade=t=in") == 2 and graph.count("anullsrc") == 1
    assert "concat=n=3:v=0:a=1,loudnorm" in graph and joined.duration([[1.0, 3.5], [7.0, 9.0]]) == pytest.approx(4.8)


def test_fewer_references_say_why_and_what_to_try():
    rejected = [
        {"start": 0.0, "end": 3.5, "why": "short"},
        {"start": 5.0, "end": 7.0, "why": "short"},
        {"start": 9.0, "end": 16.0, "why": "overlap"},
    ]
    candidates = [{"file": "joined-1-40.wav", "kind": "joined"}, {"file": None, "kind": "single"}]
    summary = findings.summarize(
        asked=5, candidates=candidates, rejected=rejected, mode="cluster", min_seconds=5.0,
        clusters=[{}, {}, {}], pool={"clean_regions": 4, "clean_speech_s": 9.5}, skipped=[(3, "empty cue")],
    )  # fmt: skip
    assert summary["produced"] == 1 and summary["joined"] == 1 and summary["rejected"] == {"overlap": 1, "short": 2}
    assert summary["why"].startswith("1 of 5 references: 2 stretches are shorter than the minimum; 1 stretch overlaps")
    assert "4 clean short regions of the target (9.5 s of speech) gave 1 joined reference" in summary["why"]
    advice = " | ".join(summary["advice"])
    assert "--min-seconds 3 (now 5) admits 1 more single stretch" in advice
    assert "--example CLIP" in advice and "one of the 3 speaker clusters" in advice
    lines = findings.lines(summary)
    assert lines[0] == "1 of 5 references (0 single, 1 joined)" and lines[1].startswith("why fewer: ")
    # Enough came out: nothing to explain.
    enough = findings.summarize(
        asked=1, candidates=candidates, rejected=rejected, mode="named", min_seconds=5.0, clusters=[], pool={},
        skipped=[],
    )  # fmt: skip
    assert (
        enough["why"] is None
        and enough["advice"] == []
        and findings.lines(enough) == ["1 of 1 references (0 single, 1 joined)"]
    )


def test_fast_embeddings_equal_the_shared_scorer(tmp_path):
    """voice/embedding.py arranges the work differently; the values must be the shared scorer's."""
    from bench_py.judge.similarity import embed_many as shared
    from bench_py.voice.embedding import embed_many as fast

    pcms = []
    for index, (voice, text) in enumerate([("slt", "I kept thinking about the long walk home."),
                                           ("kal16", "Nobody wrote about the empty station.")]):  # fmt: skip
        path = tmp_path / f"{index}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True)
        pcms.append(read_wav_file(str(path)))
    pcms.append(Pcm(np.random.default_rng(0).integers(-300, 300, 4000).astype(np.int16), 16_000))  # 0.25 s: none
    expected, got = shared(pcms), fast(pcms)
    assert got[2] is None and expected[2] is None
    for a, b in zip(expected[:2], got[:2], strict=True):
        assert np.allclose(a, b, atol=1e-5)
    assert float(np.dot(got[0], got[1])) < 0.9  # two voices, told apart
