"""Blind listening without a run: which answers count, what the plan leaks (nothing), what the
sealed view keeps, clips of a pair made the same length, and answers refused as they are given."""

from __future__ import annotations

import json
import random
import secrets
from math import sqrt
from pathlib import Path

import numpy as np
import pytest

from bench_py import documents
from bench_py.audio import Pcm, parse_wav_header, write_wav_file
from bench_py.judge import pairing
from bench_py.judge import session as sessions
from bench_py.results.publish import sealed_measurements

SESSION = {
    "session": "5e55104d00000000",
    "pairs": [{"pair": "p01", "a": "aa", "b": "bb", "text": "x"}, {"pair": "p02", "a": "cc", "b": "dd", "text": "y"}],
    "mapping_sha256": "0" * 64,
}
MAPPING = {
    "aa": {"side": "candidate", "utterance": 0, "condition": "cloned"},
    "bb": {"side": "incumbent", "utterance": 0, "condition": "cloned"},
    "cc": {"side": "incumbent", "utterance": 1, "condition": "cloned"},
    "dd": {"side": "candidate", "utterance": 1, "condition": "cloned"},
}
LISTENERS = [
    {"name": "alice", "simulated": False, "registered_at": "t"},
    {"name": "simulated-1", "simulated": True, "registered_at": "t"},
]


def answer(**change):
    record = {
        "schema": "voxbench/scores/v0",
        "session": SESSION["session"],
        "listener": "alice",
        "simulated": False,
        "pair": "p01",
        "clip": "aa",
        "score": 4,
        "at": "t",
    }
    return {**record, **change}


def lines(records):
    out, offset = [], 0
    for record in records:
        size = len(json.dumps(record)) + 1
        out.append((offset, offset + size, record))
        offset += size
    return out


def test_only_blind_answers_of_the_sealed_session_from_registered_listeners_count():
    records = [
        answer(),
        answer(clip="aa", score=5),  # supersedes the first
        answer(clip="bb", score=2),
        answer(session="another-session"),
        answer(side="candidate", utterance=0, condition="cloned", clip="cc", pair="p02"),
        answer(listener="mallory"),
        answer(listener="simulated-1"),  # a simulated listener's answer claiming to be real
        answer(pair="p02", clip="aa"),  # a clip of another pair
        answer(pair="p09"),
        {"schema": "voxbench/scores/v0", "at": "t", "refused": "the session has been revealed: answers are closed"},
        answer(listener="simulated-1", simulated=True, clip="dd", pair="p02", score=1),
    ]
    result = sessions.classify(SESSION, LISTENERS, lines(records))
    assert sorted((r["listener"], r["clip"], r["score"]) for r in result.counted) == [
        ("alice", "aa", 5),
        ("alice", "bb", 2),
        ("simulated-1", "dd", 1),
    ]
    assert all("side" not in r for r in result.counted)  # before the reveal nobody knows
    reasons = [r["refused"] for r in result.refused]
    assert len(reasons) == 7
    assert any("not an answer to the sealed session" in r for r in reasons)
    assert any("names a side" in r for r in reasons)
    assert any("'mallory' is not a registered listener" in r for r in reasons)
    assert any("simulated flag" in r for r in reasons)
    assert sum("does not name a pair" in r for r in reasons) == 2
    assert any("answers are closed" in r for r in reasons)
    # Without a session nothing is blind, whatever it says.
    assert sessions.classify(None, LISTENERS, lines(records[:3])).counted == []


def test_after_the_reveal_answers_join_their_sides_and_only_those_sealed_by_the_reveal_count():
    before = [answer(), answer(clip="bb", score=2)]
    sealed_bytes = lines(before)[-1][1]
    revealed = {**SESSION, "revealed_mapping": MAPPING, "scores_at_reveal": {"bytes": sealed_bytes, "sha256": "x"}}
    after = [answer(clip="cc", pair="p02", score=5), answer(score=1)]  # appended after the reveal
    result = sessions.classify(revealed, LISTENERS, lines(before + after))
    assert sorted((r["clip"], r["side"], r["score"]) for r in result.counted) == [
        ("aa", "candidate", 4),
        ("bb", "incumbent", 2),
    ]
    assert [r["refused"] for r in result.refused] == ["given after the reveal"] * 2


def test_a_scores_file_changed_inside_the_sealed_part_is_named(tmp_path):
    path = tmp_path / "scores.jsonl"
    for record in (answer(), answer(clip="bb")):
        documents.append("scores", path, record)
    data = path.read_bytes()
    import hashlib

    session = {**SESSION, "scores_at_reveal": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    assert sessions.scores_seal_error(session, path) is None
    documents.append("scores", path, answer(score=1))  # appending after the reveal is fine
    assert sessions.scores_seal_error(session, path) is None
    path.write_bytes(data.replace(b'"score":4', b'"score":5', 1) + b"\n")
    assert "answers were changed after the reveal" in sessions.scores_seal_error(session, path)


def _binomial_ok(hits: int, n: int) -> bool:
    """Within 4.5 standard deviations of a fair coin (a false alarm about once in 150,000 runs)."""
    return abs(hits - n / 2) <= 4.5 * sqrt(n / 4)


def test_opaque_ids_and_order_say_nothing_about_the_side():
    """The plan's public parts (ids, pair order, A/B slot) re-derive the mapping no better than
    chance, over many sessions; the A/B slot is exactly balanced in each one."""
    keys = [(u, c) for u in range(4) for c in ("cloned", "preset")]
    trials = 2000
    by_name = by_pair_order = 0
    for _ in range(trials):
        pairs, mapping = pairing.plan(keys, random.Random(secrets.token_hex(8)))
        slots = [mapping[p["a"]]["side"] for p in pairs]
        assert slots.count("candidate") == slots.count("incumbent") == 4  # counterbalanced
        first = pairs[0]
        guess = "candidate" if first["a"] < first["b"] else "incumbent"  # "the smaller id is the candidate"
        by_name += mapping[first["a"]]["side"] == guess
        by_pair_order += mapping[first["a"]]["side"] == "candidate"  # "A of the first pair is the candidate"
        assert sorted((m["utterance"], m["condition"]) for m in mapping.values()) == sorted(keys * 2)
    assert _binomial_ok(by_name, trials), by_name
    assert _binomial_ok(by_pair_order, trials), by_pair_order


def test_the_clips_of_a_pair_become_the_same_size_and_length(tmp_path):
    short, long_ = tmp_path / "a.wav", tmp_path / "b.wav"
    write_wav_file(str(short), Pcm(np.full(24000, 1000, dtype=np.int16), 24000))
    write_wav_file(str(long_), Pcm(np.full(30000, -1000, dtype=np.int16), 24000))
    assert sessions.equalize_pair([short, long_]) == 30000
    a, b = short.read_bytes(), long_.read_bytes()
    assert len(a) == len(b) == 44 + 60000 and a[:44] == b[:44]
    assert parse_wav_header(a)[3] == 44
    assert np.frombuffer(a[44:], "<i2")[24000:].tolist() == [0] * 6000  # padded with silence
    assert short.stat().st_mtime == long_.stat().st_mtime == sessions.CLIP_MTIME


def _session_dir(tmp_path: Path) -> sessions.Session:
    scoring = tmp_path / "scoring"
    scoring.mkdir()
    (scoring / "session.json").write_text(json.dumps(SESSION))
    (scoring / "listeners.json").write_text(json.dumps({"listeners": []}))
    return sessions.load(tmp_path)


def test_answers_are_refused_and_logged_unless_blind_registered_and_open(tmp_path):
    session = _session_dir(tmp_path)
    with pytest.raises(sessions.RefusedAnswer, match="not a registered listener") as refused:
        sessions.answer(session, "alice", "p01", "aa", 4)
    assert refused.value.status == 403
    sessions.register(session, "alice")
    with pytest.raises(sessions.SessionError, match="listener name"):
        sessions.register(session, "../alice")
    sessions.answer(session, "alice", "p01", "aa", 4)
    for args, kwargs, status in (
        (("alice", "p01", "cc", 4), {}, 400),
        (("alice", "p01", "aa", 9), {}, 400),
        (("alice", "p01", "aa", True), {}, 400),
        (("alice", "p01", "aa", 4), {"session_id": "an-old-session"}, 409),
        (("alice", "p01", "aa", 4), {"simulated": True}, 403),
    ):
        with pytest.raises(sessions.RefusedAnswer) as refused:
            sessions.answer(session, *args, **kwargs)
        assert refused.value.status == status
    records = documents.read_records("scores", session.scores_path)
    assert len(records) == 7 and sum("refused" in r for r in records) == 6
    assert sessions.progress(session, "alice") == {"answers": {"aa": 4}, "pairs_done": 0, "pairs": 2}
    # Each listener sees their own answers only.
    sessions.register(session, "bob")
    sessions.answer(session, "bob", "p02", "cc", 1)
    assert sessions.progress(session, "bob")["answers"] == {"cc": 1}
    assert sessions.finished_listeners(session) == {"alice": False, "bob": False}
    # A revealed session takes no answer and no new listener.
    data = json.loads((tmp_path / "scoring" / "session.json").read_text())
    (tmp_path / "scoring" / "session.json").write_text(json.dumps({**data, "revealed_mapping": MAPPING}))
    with pytest.raises(sessions.RefusedAnswer, match="revealed") as refused:
        sessions.answer(session, "alice", "p01", "bb", 3)
    assert refused.value.status == 409
    with pytest.raises(sessions.SessionError, match="no listener can join"):
        sessions.register(session, "carol")
    assert documents.read_records("scores", session.scores_path)[-1]["refused"].startswith(
        "the session has been revealed"
    )


MEASUREMENTS_BENCH = {
    "records": {"candidate": [{"audio_s": 1.5, "samples": 36000}], "incumbent": [{"audio_s": 2.1}]},
    "summary": {
        "candidate": {
            "cloned": {
                "requests": 10,
                "ok": 10,
                "timeouts": 0,
                "errors": 0,
                "ttfa_ms": {"n": 10, "p50": 150.0, "p90": 170.0, "p99": 180.0, "mean": 155.0, "min": 140.0,
                            "max": 181.0, "stdev": 5.0, "method": "linear"},
                "audio_s": {"n": 10, "p50": 1.5, "min": 1.4, "max": 3.9},
                "rtf": {"n": 10, "p50": 0.1},
                "underrun_ms": {"n": 10, "p50": 0.0},
            }
        }
    },
    "load": {
        "utterance": "text",
        "sweep": {"mode": "concurrency_sweep", "limit": 2, "levels": [
            {"concurrency": 1, "requests": 4, "errors": 0, "error_rate": 0.0, "wall_s": 1.0, "aggregate_rtf": 0.3,
             "ttfa_ms": {"n": 4, "p50": 150.0, "min": 1.0}, "rtf": {"p50": 0.1}, "raw": [{"audio_s": 2.2}]},
        ]},
    },
}  # fmt: skip


def test_the_sealed_view_keeps_latency_and_withholds_every_duration():
    m = {"schema": "voxbench/measurements/v0", "bench": MEASUREMENTS_BENCH, "candidate": {"name": "voxtral"}}
    sealed = sealed_measurements(m, "f" * 64)
    assert sealed["bench"]["records"] == {} and sealed["sealed_view"]["full_sha256"] == "f" * 64
    cloned = sealed["bench"]["summary"]["candidate"]["cloned"]
    assert set(cloned) == {"requests", "ok", "timeouts", "errors", "ttfa_ms"}
    assert cloned["ttfa_ms"] == {"n": 10, "p50": 150.0, "p90": 170.0, "p99": 180.0, "mean": 155.0, "method": "linear"}
    (level,) = sealed["bench"]["load"]["sweep"]["levels"]
    assert level == {"concurrency": 1, "requests": 4, "errors": 0, "error_rate": 0.0, "wall_s": 1.0,
                     "ttfa_ms": {"n": 4, "p50": 150.0}}  # fmt: skip
    text = json.dumps({k: v for k, v in sealed.items() if k != "sealed_view"})  # the note names what it withholds
    for withheld in ("audio_s", "rtf", "samples", "raw", "1.5", "2.1", "3.9", "underrun"):
        assert withheld not in text, withheld
    assert m["bench"]["records"]["candidate"]  # the run's own file is untouched
