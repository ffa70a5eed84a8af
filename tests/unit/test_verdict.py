"""The verdict table: first applicable row wins."""

import pytest

from bench_py import documents
from bench_py.config.model import load
from bench_py.judge import verdict as verdicts

CONFIG = load({"gemma_mode": "parallel"})

#: What a measurements document holds besides the parts the verdict table reads.
DOCUMENT = {
    "schema": "voxbench/measurements/v0",
    "run_id": "BENCHMARK-VOXTRAL-VM-20261126-090000",
    "voxbench_version": "0.1.0",
    "host": {"name": "vm", "arch": "x86_64"},
    "created_at": "2026-11-26T09:00:00+00:00",
    "final_state": "DONE",
    "aborted": False,
    "history": [],
    "gemma_mode": "parallel",
    "candidate": {"name": "voxtral", "standin": True, "where": "vm"},
    "incumbent": {"name": "chatterbox", "standin": True, "where": "localhost"},
    "preflight": None,
    "baseline": None,
    "install_paths": None,
    "bench": None,
    "teardown": None,
}
BENCH = {
    "utterances": [],
    "conditions": ["cloned", "preset"],
    "repetitions": 1,
    "records": {},
    "summary": {},
    "candidate_timeout_fraction": 0.0,
    "phase3_passed": True,
    "memory": {"sources": {}},
}


def document(data):
    """The verdict reads a whole measurements document (as its model); these tests write only the
    parts the table looks at, and this fills in the rest."""
    doc = {**DOCUMENT, **data}
    for side in ("candidate", "incumbent"):
        doc[side] = {**DOCUMENT[side], **doc[side]}
    if doc["preflight"] is not None:
        rule = {"text": "", "thresholds": {}, **doc["preflight"].get("rule", {})}
        doc["preflight"] = {"ok": True, "checks": [], **doc["preflight"], "rule": rule}
    if doc["bench"] is not None:
        doc["bench"] = {**BENCH, **doc["bench"]}
    return documents.measurements_from(doc)


def decide(data, config, scores=None):
    return verdicts.decide(document(data), config, scores)


def measurements(**overrides):
    base = {
        "aborted": False,
        "reason": None,
        "preflight": {"rule": {"sha256": "a" * 64}},
        "install_paths": {
            "selected": "2A",
            "paths": [{"install_path": "2A", "streaming_capable": True, "status": "ok"}],
        },
        "bench": {"candidate_timeout_fraction": 0.0, "summary": {"candidate": {"cloned": {"ttfa_ms": {"p50": 300.0}}}}},
    }
    return {**base, **overrides}


def scores(candidate: float, incumbent: float, n: int = 10, simulated: bool = False):
    return [
        {"side": side, "condition": "cloned", "score": value, "simulated": simulated}
        for side, value in (("candidate", candidate), ("incumbent", incumbent))
        for _ in range(n)
    ]


def test_aborted_runs_are_inconclusive():
    verdict = decide(measurements(aborted=True, reason="co-tenant gate tripped"), CONFIG)
    assert (verdict["verdict"], verdict["row"]) == ("inconclusive", 1)
    assert "gate" in verdict["reason"]


def test_too_many_timeouts_are_inconclusive():
    bench = {"candidate_timeout_fraction": 0.15, "summary": {}}
    assert decide(measurements(bench=bench), CONFIG)["row"] == 1


@pytest.mark.parametrize(
    ("statuses", "verdict", "row"),
    [
        (["unsupported", "disallowed_by_vendor"], "keep_chatterbox_voxtral_tts_unsupported_upstream", 2),
        (["unsupported", "failed"], "inconclusive", 3),
    ],
)
def test_no_install_path_reached_benching(statuses, verdict, row):
    paths = [
        {"install_path": f"2{p}", "streaming_capable": True, "status": s}
        for p, s in zip("ABCD", statuses, strict=False)
    ]
    result = decide(measurements(install_paths={"selected": None, "paths": paths}), CONFIG)
    assert (result["verdict"], result["row"]) == (verdict, row)


def test_only_batch_paths_worked():
    paths = {"selected": "2D", "paths": [{"install_path": "2D", "streaming_capable": False, "status": "ok"}]}
    assert decide(measurements(install_paths=paths), CONFIG)["verdict"] == "aarch64_vllm_omni_unverified"


def test_listening_pending_until_enough_real_scores():
    assert decide(measurements(), CONFIG)["verdict"] == "pending_listening"
    assert decide(measurements(), CONFIG, scores(5, 1, simulated=True))["verdict"] == "pending_listening"


def test_a_pending_verdict_names_the_incumbent_takes_still_deferred_in_its_evidence():
    """Its reason reads as ever (a stored verdict is checked against it); the evidence says what to run."""
    bench = {**measurements()["bench"], "deferred_incumbent": ["u01\tcloned\tHi."] * 3, "deferred_reason": "lost"}
    pending = decide(measurements(bench=bench), CONFIG)
    assert (pending["row"], pending["reason"]) == (6, decide(measurements(), CONFIG)["reason"])
    assert pending["evidence"]["deferred_incumbent"] == {
        "takes": 3,
        "reason": "lost",
        "resume": f"voxbench baseline resume {DOCUMENT['run_id']}",
    }
    assert "deferred_incumbent" not in decide(measurements(), CONFIG)["evidence"]


@pytest.mark.parametrize(
    ("candidate", "incumbent", "ttfa", "verdict"),
    [
        (4.0, 3.5, 300.0, "swap_candidate"),
        (3.9, 3.5, 300.0, "keep_chatterbox"),  # margin short of 0.5
        (4.5, 3.0, 650.0, "keep_chatterbox"),  # too slow to first audio
    ],
)
def test_the_sealed_rule_decides(candidate, incumbent, ttfa, verdict):
    data = measurements(
        bench={"candidate_timeout_fraction": 0.0, "summary": {"candidate": {"cloned": {"ttfa_ms": {"p50": ttfa}}}}}
    )
    result = decide(data, CONFIG, scores(candidate, incumbent))
    assert result["verdict"] == verdict
    assert result["rule_sha256"] == "a" * 64


def _with_ttfa(ttfa):
    return measurements(
        bench={"candidate_timeout_fraction": 0.0, "summary": {"candidate": {"cloned": {"ttfa_ms": {"p50": ttfa}}}}}
    )


def _scores_from(candidate: list[int], incumbent: list[int], condition: str = "cloned", simulated: bool = False):
    return [
        {"side": side, "condition": condition, "score": value, "simulated": simulated}
        for side, values in (("candidate", candidate), ("incumbent", incumbent))
        for value in values
    ]


@pytest.mark.parametrize(
    ("candidate", "incumbent", "ttfa", "verdict"),
    [
        ([4, 3] * 5, [3] * 10, 300.0, "swap_candidate"),  # difference exactly 0.5
        ([4, 3] * 5, [3] * 9 + [4], 300.0, "keep_chatterbox"),  # 0.4
        ([4, 3, 4] * 4, [3, 3, 4] * 4, 300.0, "keep_chatterbox"),  # 1/3
        ([5] * 10, [1] * 10, 500.0, "swap_candidate"),  # TTFA exactly at the limit
        ([5] * 10, [1] * 10, 500.001, "keep_chatterbox"),
        ([5] * 10, [1] * 10, None, "keep_chatterbox"),  # no TTFA measured: the rule cannot pass
    ],
)
def test_exact_boundaries(candidate, incumbent, ttfa, verdict):
    result = decide(_with_ttfa(ttfa), CONFIG, _scores_from(candidate, incumbent))
    assert (result["verdict"], result["row"]) == (verdict, 7 if verdict == "swap_candidate" else 8)


def test_simulated_and_preset_scores_neither_count_nor_move_the_means():
    real = _scores_from([4] * 10, [3] * 10)
    noise = _scores_from([1] * 50, [5] * 50, simulated=True) + _scores_from([1] * 10, [5] * 10, condition="preset")
    result = decide(_with_ttfa(300.0), CONFIG, real + noise)
    assert result["verdict"] == "swap_candidate"
    assert result["evidence"]["means"] == {"candidate": 4.0, "incumbent": 3.0}
    # Nine real scores per side plus any number of simulated ones: still pending.
    pending = decide(
        _with_ttfa(300.0), CONFIG, _scores_from([5] * 9, [1] * 9) + _scores_from([5] * 40, [1] * 40, simulated=True)
    )
    assert (pending["verdict"], pending["row"]) == ("pending_listening", 6)


def test_a_preset_substitute_keeps_the_incumbent_whatever_the_scores():
    paths = {
        "selected": "2A",
        "paths": [{"install_path": "2A", "streaming_capable": True, "status": "ok", "cloning": "preset_substitute"}],
    }
    result = decide(measurements(install_paths=paths), CONFIG, _scores_from([5] * 10, [1] * 10))
    assert (result["verdict"], result["row"], result["reason"]) == ("keep_chatterbox", 5, "cloning_unsupported")


@pytest.mark.parametrize(
    ("statuses", "verdict", "row"),
    [
        (["unsupported"], "keep_chatterbox_voxtral_tts_unsupported_upstream", 2),
        (["disallowed_by_vendor", "disallowed_by_vendor"], "keep_chatterbox_voxtral_tts_unsupported_upstream", 2),
        (["blocked", "unsupported", "unsupported", "unsupported"], "inconclusive", 3),
        (["failed", "failed"], "inconclusive", 3),
        ([], "inconclusive", 3),
    ],
)
def test_path_status_mixes(statuses, verdict, row):
    paths = [
        {"install_path": f"2{c}", "streaming_capable": c in "AB", "status": s}
        for c, s in zip("ABCD", statuses, strict=False)
    ]
    result = decide(
        measurements(install_paths={"selected": None, "paths": paths}), CONFIG, _scores_from([5] * 10, [1] * 10)
    )
    assert (result["verdict"], result["row"]) == (verdict, row)


def test_an_abort_outranks_everything_and_the_timeout_share_is_a_boundary():
    aborted = decide(measurements(aborted=True, reason="gate"), CONFIG, _scores_from([5] * 10, [1] * 10))
    assert (aborted["verdict"], aborted["row"]) == ("inconclusive", 1)
    for fraction, row in ((0.15, 1), (0.149, 7)):
        data = _with_ttfa(300.0)
        data["bench"]["candidate_timeout_fraction"] = fraction
        assert decide(data, CONFIG, _scores_from([5] * 10, [1] * 10))["row"] == row


def test_the_rule_recorded_in_the_files_is_checked_against_its_seal():
    from bench_py.judge.verdict import SealError, decide_from_files

    sealed = CONFIG.rule.seal("voxtral", "chatterbox")
    data = {
        **_with_ttfa(300.0),
        "preflight": {"rule": sealed},
        "candidate": {"name": "voxtral"},
        "incumbent": {"name": "chatterbox"},
    }
    assert decide_from_files(document(data), _scores_from([5] * 10, [1] * 10))["verdict"] == "swap_candidate"
    data["preflight"]["rule"] = {**sealed, "thresholds": {**sealed["thresholds"], "min_scores": 1}}
    with pytest.raises(SealError, match="changed after PREFLIGHT"):
        decide_from_files(document(data), [])


def test_the_verdict_names_are_the_tables_with_this_runs_engines():
    from bench_py.judge.verdict import VerdictNameError, check_verdict_name, verdict_names

    assert verdict_names("voxtral", "chatterbox") == (
        "inconclusive",
        "keep_chatterbox_voxtral_tts_unsupported_upstream",
        "aarch64_vllm_omni_unverified",
        "keep_chatterbox",
        "pending_listening",
        "swap_candidate",
    )
    for name in verdict_names("voxtral", "chatterbox"):
        assert check_verdict_name(name, "voxtral", "chatterbox") == name
    other = load({"gemma_mode": "parallel", "candidate": {"name": "fish"}, "incumbent": {"name": "kokoro-v1"}})
    assert "keep_kokoro-v1_fish_tts_unsupported_upstream" in verdict_names(other.candidate.name, other.incumbent.name)
    for wrong in ("keep_whatever", "keep_piper", "keep_chatterbox_voxtral", "swap", "keep_kokoro-v1"):
        with pytest.raises(VerdictNameError, match="is not one of this run's verdicts: inconclusive, keep_chatterbox"):
            check_verdict_name(wrong, "voxtral", "chatterbox")


def _sweep(levels: dict[int, float | None]) -> dict:
    return {
        "sweep": {
            "levels": [
                {"concurrency": c, "ttfa_ms": {"p50": p50} if p50 is not None else {"n": 0}}
                for c, p50 in levels.items()
            ]
        }
    }


@pytest.mark.parametrize(
    ("concurrency", "loop_p50", "load_result", "verdict", "source"),
    [
        (1, 300.0, _sweep({1: 900.0, 2: 900.0}), "swap_candidate", "timed loop at concurrency 1"),
        (1, 700.0, _sweep({1: 100.0}), "keep_chatterbox", "timed loop at concurrency 1"),
        (4, 100.0, _sweep({1: 100.0, 2: 200.0, 4: 450.0}), "swap_candidate", "load sweep at concurrency 4"),
        (4, 100.0, _sweep({1: 100.0, 2: 200.0, 4: 650.0}), "keep_chatterbox", "load sweep at concurrency 4"),
        (4, 100.0, _sweep({1: 100.0, 2: 200.0}), "keep_chatterbox", "not measured at concurrency 4"),
        (4, 100.0, None, "keep_chatterbox", "not measured at concurrency 4"),
        (4, 100.0, _sweep({4: None}), "keep_chatterbox", "not measured: the load sweep's level 4 has no ttfa_ms"),
    ],
)
def test_the_sealed_ttfa_concurrency_picks_the_figure(concurrency, loop_p50, load_result, verdict, source):
    """The TTFA p50 is the one measured at the sealed concurrency; none stands in for a missing one."""
    config = load_config(concurrency)
    data = _with_ttfa(loop_p50)
    data["bench"]["load"] = load_result
    result = decide(data, config, _scores_from([5] * 10, [1] * 10))
    assert result["verdict"] == verdict
    assert source in result["evidence"]["ttfa_source"]
    assert result["evidence"]["ttfa_concurrency"] == concurrency
    if "not measured" in source:
        assert result["evidence"]["candidate_ttfa_ms_p50"] is None and "not measured" in result["reason"]


def load_config(concurrency: int):
    return load({"gemma_mode": "parallel", "rule": {"ttfa_concurrency": concurrency}})
