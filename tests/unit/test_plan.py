"""`voxbench plan` against host facts it is handed: what a real titan's Docker or a missing wheel
would make it say."""

from __future__ import annotations

import pytest

from bench_py.config.model import load
from bench_py.plan import HostFacts, make_plan
from bench_py.run import preflight
from bench_py.standins import upstream


def facts(runtimes: list[str]) -> HostFacts:
    return HostFacts(
        "titan",
        "aarch64",
        100.0,
        128.0,
        docker={"answers": True, "runtimes": runtimes, "version": "28.0"},
        image={"platforms": ["linux/arm64"], "source": "local image", "labels": {}},
        cotenant={"answers": True, "status": 200, "models": ["google/gemma-4-26B-A4B-it"]},
        ports={"8091": True},
        weights_files=12,
    )


def checks(plan: dict, name: str) -> list[dict]:
    return [c for c in plan["checks"] if c["check"] == name]


def unavailable() -> dict:
    return {r.minor: {"release": r, "error": "no wheel here"} for r in upstream.RELEASES.values()}


def test_a_real_image_without_the_nvidia_runtime_fails_the_plan():
    config = load({"gemma_mode": "parallel", "candidate": {"image": "vllm-omni:0.18-aarch64"}})
    without = make_plan(config, facts(["io.containerd.runc.v2", "runc"]), unavailable())
    (gpu,) = checks(without, "gpu")
    assert gpu["ok"] is False and "no NVIDIA runtime" in gpu["message"] and not without["ok"]
    assert not checks(make_plan(config, facts(["nvidia", "runc"]), unavailable()), "gpu")


def test_a_release_whose_wheel_is_missing_is_said_unchecked_not_passed():
    plan = make_plan(load({"gemma_mode": "parallel"}), None, unavailable())
    unchecked = [c for c in plan["checks"] if c["check"].startswith("stage config") and c["ok"] is None]
    assert len(unchecked) == len(upstream.RELEASES)
    assert all("not available here (no wheel here)" in c["message"] for c in unchecked)


@pytest.mark.parametrize("gemma_mode", ["parallel", "pause-gemma"])
def test_a_shortfall_pause_gemma_would_free_is_checked_again_at_launch(gemma_mode):
    """pause-gemma frees the co-tenant's memory after PREFLIGHT: there a shortfall only warns."""
    config = load({"gemma_mode": gemma_mode, "candidate": {"memory_required_gb": 10_000.0}})
    memory = preflight.check_memory(config)
    budget = preflight.check_memory_budget(
        load({"gemma_mode": gemma_mode, "candidate": {"launch": {"memory_budget_gb": 10_000.0}}})
    )
    for check in (memory, budget):
        if gemma_mode == "parallel":
            assert check.ok is False and "pause-gemma" in check.message
        else:
            assert check.ok and check.warning and check.detail == {"deferred_to": "launch"}
            assert "checked again at launch, after the pause" in check.message
    facts_plan = make_plan(
        load({"gemma_mode": gemma_mode, "candidate": {"launch": {"memory_budget_gb": 10_000.0}}}),
        facts(["nvidia"]),
        unavailable(),
    )
    (finding,) = checks(facts_plan, "memory_budget")
    assert finding["ok"] is (False if gemma_mode == "parallel" else None)
