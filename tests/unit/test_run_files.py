"""The run's files: schema validation names the bad field; logs are append-only and crash-safe."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench_py import documents
from bench_py.judge import listening
from bench_py.results.plots import Plot, Series, render

SCORE = {
    "schema": "voxbench/scores/v0",
    "session": "5e55104d",
    "listener": "alice",
    "simulated": False,
    "pair": "p01",
    "clip": "c3f9",
    "score": 4,
    "at": "2026-11-26T09:00:00+00:00",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"score": "4"}, "score"),
        ({"score": 6}, "score"),
        ({"listener": "../etc"}, "listener"),
        ({"simulated": None}, "simulated"),
    ],
)
def test_a_mistyped_score_is_rejected_naming_the_field(tmp_path, change, field):
    with pytest.raises(documents.RunFileError, match=rf"^scores {field}: "):
        documents.append("scores", tmp_path / "scores.jsonl", {**SCORE, **change})
    assert not (tmp_path / "scores.jsonl").exists()


def test_a_missing_field_is_named(tmp_path):
    record = {k: v for k, v in SCORE.items() if k != "clip"}
    with pytest.raises(documents.RunFileError, match=r"^scores clip: 'clip' is a required property"):
        documents.append("scores", tmp_path / "s.jsonl", record)
    verdict = {"verdict": "keep_chatterbox", "row": 8, "reason": "x", "evidence": {}}
    with pytest.raises(documents.RunFileError, match=r"^verdict rule_sha256: "):
        documents.write("verdict", tmp_path / "verdict.json", verdict)
    with pytest.raises(documents.RunFileError, match=r"^verdict row: "):
        documents.write("verdict", tmp_path / "verdict.json", {**verdict, "rule_sha256": None, "row": 9})


def test_measurements_missing_a_nested_field_names_its_path(tmp_path):
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps({"schema": "voxbench/measurements/v0"}))
    with pytest.raises(documents.RunFileError, match=r"^measurements run_id: 'run_id' is a required property"):
        documents.read("measurements", path)


def test_answers_survive_a_torn_last_line_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "scores.jsonl"
    documents.append("scores", path, SCORE)
    documents.append("scores", path, {**SCORE, "pair": "p02", "score": 2})
    with path.open("a") as handle:  # a crash in the middle of the third write
        handle.write('{"schema": "voxbench/scores/v0", "listen')
    assert [r["pair"] for r in documents.read_records("scores", path)] == ["p01", "p02"]
    # The next answer sets the torn tail aside (with a note) and lands on a line of its own.
    documents.append("scores", path, {**SCORE, "pair": "p03"})
    assert [r["pair"] for r in documents.read_records("scores", path)] == ["p01", "p02", "p03"]
    (note,) = [json.loads(line) for line in documents.torn_path(path).read_text().splitlines()]
    assert note["text"] == '{"schema": "voxbench/scores/v0", "listen' and note["file"] == "scores.jsonl"
    assert note["length"] == 40 and note["offset"] == len("".join(path.read_text().splitlines(True)[:2]))
    path.write_text(json.dumps(SCORE) + "\nnot json\n" + json.dumps(SCORE) + "\n")
    with pytest.raises(documents.RunFileError, match="scores line 2: not JSON"):
        documents.read_records("scores", path)
    path.write_text(json.dumps(SCORE) + "\n" + json.dumps({**SCORE, "score": 0}) + "\n")
    with pytest.raises(documents.RunFileError, match="scores line 2 score: "):
        documents.read_records("scores", path)


WRITER = """
import sys
from bench_py import documents
path, count = sys.argv[1], int(sys.argv[2])
record = {"schema": "voxbench/scores/v0", "session": "5e55104d", "listener": "alice", "simulated": False,
          "pair": "p01", "clip": "c3f9", "score": 4, "at": "2026-11-26T09:00:00+00:00"}
for n in range(count):
    documents.append("scores", path, {**record, "pair": f"p{n:02d}"})
print("appended", flush=True)
"""


def test_a_writer_killed_mid_line_loses_only_that_line_and_later_answers_still_append(tmp_path):
    """A real SIGKILL between the two halves of a line (the test-only pause makes the moment certain)."""
    path = tmp_path / "scores.jsonl"
    subprocess.run([sys.executable, "-c", WRITER, str(path), "3"], check=True, capture_output=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "1"],
        env={**os.environ, documents.TEST_PAUSE_ENV: "30"},
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while path.read_bytes().endswith(b"\n"):
        assert time.monotonic() < deadline, "the writer never wrote its first half"
        time.sleep(0.01)
    torn = path.read_bytes().split(b"\n")[-1]
    assert torn and not torn.endswith(b"}")  # half a record is on disk, without its newline
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=10) == -signal.SIGKILL
    assert writer.stdout.read() == b""  # it never got to acknowledge the answer
    assert [r["pair"] for r in documents.read_records("scores", path)] == ["p00", "p01", "p02"]
    subprocess.run([sys.executable, "-c", WRITER, str(path), "2"], check=True, capture_output=True)
    assert [r["pair"] for r in documents.read_records("scores", path)] == ["p00", "p01", "p02", "p00", "p01"]
    (note,) = [json.loads(line) for line in documents.torn_path(path).read_text().splitlines()]
    assert note["text"].encode() == torn and note["length"] == len(torn)


def test_refused_and_not_blind_records_are_kept_readable(tmp_path):
    path = tmp_path / "scores.jsonl"
    refused = {"schema": "voxbench/scores/v0", "at": "2026-11-26T09:00:00+00:00", "refused": "answers are closed"}
    documents.append("scores", path, {**refused, "listener": "../x", "score": "'9'"})  # as given, trimmed
    documents.append("scores", path, {**SCORE, "side": "candidate", "utterance": 1, "condition": "cloned"})
    assert len(documents.read_records("scores", path)) == 2  # read; counting them is the session's call
    with pytest.raises(documents.RunFileError, match=r"^scores refused: "):
        documents.append("scores", path, {**refused, "refused": ""})


def test_documents_and_logs_keep_their_kind(tmp_path):
    with pytest.raises(documents.RunFileError, match="append-only"):
        documents.write("scores", tmp_path / "s.json", SCORE)
    with pytest.raises(documents.RunFileError, match="whole document"):
        documents.append("verdict", tmp_path / "v.jsonl", {})


def test_the_schemas_in_docs_are_the_ones_the_code_validates_with():
    from tests.helpers import ROOT

    package = ROOT / "bench_py" / "schemas"
    shipped = sorted(p.name for p in package.glob("*.json"))
    assert sorted(p.name for p in (ROOT / "docs" / "schemas").glob("*.json")) == shipped
    for name in shipped:
        documented = json.loads((ROOT / "docs" / "schemas" / name).read_text())
        assert documented == json.loads((package / name).read_text()), f"docs/schemas/{name}: run `make schemas`"


def _scores(pairs):
    out = []
    for listener, utterance, cand, inc in pairs:
        for side, value in (("candidate", cand), ("incumbent", inc)):
            out.append(
                {
                    "listener": listener,
                    "utterance": utterance,
                    "side": side,
                    "condition": "cloned",
                    "score": value,
                    "clip": f"{side}-{utterance}",
                    "simulated": False,
                }
            )
    return out


def test_listening_statistics_on_a_known_set():
    scores = _scores([("a", u, 4, 3) for u in range(10)] + [("b", u, 5, 3) for u in range(10)])
    scores.append({**scores[0], "simulated": True, "score": 1})
    summary = listening.summarize(scores, "cloned")
    assert summary["means"] == {"candidate": 4.5, "incumbent": 3.0}
    assert summary["mean_difference"] == 1.5 and summary["pairs"] == 20
    low, high = summary["ci95"]
    assert 1.0 <= low <= 1.5 <= high <= 2.0  # the interval only ever mixes listeners' differences of 1 and 2
    assert summary["wilcoxon_p"] < 0.001
    assert summary["simulated_ignored"] == 1 and summary["distribution"]["candidate"] == [0, 0, 0, 10, 10]
    assert summary["underpowered"] is False


def test_one_listener_with_mixed_answers_is_underpowered_and_has_no_agreement():
    summary = listening.summarize(_scores([("a", 0, 5, 1), ("a", 1, 1, 5), ("a", 2, 3, 3)]), "cloned")
    assert summary["underpowered"] is True and summary["alpha_ordinal"] is None
    assert summary["wilcoxon_p"] == pytest.approx(1.0)


def test_listeners_who_agree_perfectly_have_alpha_one():
    scores = [
        dict(s, listener=name)
        for name in ("a", "b")
        for s in _scores([("x", u, 1 + u % 5, 5 - u % 5) for u in range(10)])
    ]
    assert listening.agreement_alpha(scores) == pytest.approx(1.0)


def test_plots_are_deterministic_and_carry_their_data():
    plot = Plot(
        "p", "t", "x", "y", [Series("candidate cloned", [(0.0, 1.0), (1.0, 3.0)], markers=True)], [(2.0, "ref")]
    )
    assert render(plot) == render(plot)
    assert 'data-series="candidate cloned" data-n="2"' in render(plot)
    assert plot.data()["series"] == {"candidate cloned": [[0.0, 1.0], [1.0, 3.0]]}
    assert "no data recorded" in render(Plot("e", "t", "x", "y", []))
