"""The verdict table: first applicable row wins."""

import pytest

from bench_py.config.model import load
from bench_py.judge.verdict import decide

CONFIG = load({"gemma_mode": "parallel"})


def measurements(**overrides):
    base = {
        "aborted": False,
        "reason": None,
        "preflight": {"rule": {"sha256": "a" * 64}},
        "install_paths": {
            "selected": "2A",
            "paths": [{"install_path": "2A", "streaming_capable": True, "status": "ready"}],
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
        {"install_path": p, "streaming_capable": True, "status": s} for p, s in zip("ABCD", statuses, strict=False)
    ]
    result = decide(measurements(install_paths={"selected": None, "paths": paths}), CONFIG)
    assert (result["verdict"], result["row"]) == (verdict, row)


def test_only_batch_paths_worked():
    paths = {"selected": "2D", "paths": [{"install_path": "2D", "streaming_capable": False, "status": "ready"}]}
    assert decide(measurements(install_paths=paths), CONFIG)["verdict"] == "aarch64_vllm_omni_unverified"


def test_listening_pending_until_enough_real_scores():
    assert decide(measurements(), CONFIG)["verdict"] == "pending_listening"
    assert decide(measurements(), CONFIG, scores(5, 1, simulated=True))["verdict"] == "pending_listening"


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
