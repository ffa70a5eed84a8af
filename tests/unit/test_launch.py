"""The memory budget and its route into each vLLM-Omni release, on the releases' own stage configs."""

from __future__ import annotations

import json

import pytest
import yaml

from bench_py.config.model import load
from bench_py.engines import launch
from bench_py.standins import upstream

MEM_TOTAL = (128.0, "MemTotal (unified memory)")


def _launch(**overrides):
    return load({"gemma_mode": "parallel", "candidate": {"launch": overrides}}).candidate.launch


def test_a_derived_budget_is_what_is_free_minus_the_margin_capped():
    plan = launch.memory_plan(_launch(), available_gb=60.0, total=MEM_TOTAL)
    assert plan.budget_gb == 24.0 and plan.derived  # capped
    assert launch.memory_plan(_launch(), available_gb=20.0, total=MEM_TOTAL).budget_gb == 12.0
    assert plan.utilization == round(24 / 128, 4)
    assert "MemAvailable 60.0 GB - margin 8 GB" in plan.arithmetic and "128.0 GB" in plan.arithmetic


def test_a_budget_that_cannot_hold_the_weights_is_refused_with_its_arithmetic():
    with pytest.raises(launch.LaunchError) as error:
        launch.memory_plan(_launch(), available_gb=14.0, total=MEM_TOTAL)
    assert "MemAvailable 14.0 GB - margin 8 GB" in str(error.value) and "8 GB of weights" in str(error.value)
    with pytest.raises(launch.LaunchError, match=r"configured 1 GB.*cannot hold the model's 8 GB of weights"):
        launch.memory_plan(_launch(memory_budget_gb=1.0), available_gb=60.0, total=MEM_TOTAL)
    with pytest.raises(launch.LaunchError, match="more than is free"):
        launch.memory_plan(_launch(memory_budget_gb=40.0), available_gb=30.0, total=MEM_TOTAL)


@pytest.fixture(scope="module")
def releases():
    return {version: upstream.Source(upstream.ensure_wheel(version)) for version in upstream.RELEASES}


@pytest.mark.parametrize("version", list(upstream.RELEASES))
def test_the_budget_reaches_every_stage_of_the_releases_own_config_in_its_ratio(releases, version, tmp_path):
    source = releases[version]
    own_text = upstream.stage_config_text(source)
    own = yaml.safe_load(own_text)
    cfg = load({"gemma_mode": "parallel"}).candidate.launch
    planned = launch.plan(cfg, version, tmp_path, lambda path: source.read(path), available_gb=40.0)
    shares = launch.stage_shares(own)
    assert len(shares) == 2 and shares == [0.8, 0.1]  # Voxtral: the generator and the codec
    per_stage = planned["stage_utilizations"]
    assert len(per_stage) == 2 and abs(per_stage[0] / per_stage[1] - 8.0) < 0.05  # the engine's 8 : 1 kept
    assert abs(sum(per_stage) - planned["gpu_memory_utilization"]) < 1e-3
    if version.startswith("0.18"):
        patched = yaml.safe_load((tmp_path / "stage-config.yaml").read_text())
        assert launch.stage_shares(patched) == per_stage
        for stage in (*patched["stage_args"], *own["stage_args"]):  # everything but the share is the engine's
            stage["engine_args"].pop("gpu_memory_utilization")
        assert patched == own
        assert "stage_overrides" not in planned
    else:
        overrides = json.loads(planned["stage_overrides"])
        assert launch.overrides_utilizations(planned["stage_overrides"]) == per_stage
        assert sorted(overrides) == ["0", "1"]
        assert "stage_config" not in planned


def test_placeholders_must_be_planned_and_readback_is_compared():
    assert launch.fill(["--stage-overrides", "{stage_overrides}"], None, '{"0":{}}') == [
        "--stage-overrides",
        '{"0":{}}',
    ]
    with pytest.raises(launch.LaunchError, match="no stage config was planned"):
        launch.fill(["--stage-configs-path", "{stage_config}"], None)
    plan = {"engine_version": "0.18.0", "stage_utilizations": [0.16, 0.02]}
    assert launch.check_loaded(plan, {"engine_version": "0.18.0", "stage_utilizations": [0.16, 0.02]}) is None
    assert "reports vLLM-Omni 0.30.0" in launch.check_loaded(plan, {"engine_version": "0.30.0"})
    assert "not the [0.16, 0.02]" in launch.check_loaded(plan, {"stage_utilizations": [0.8, 0.1]})
    assert launch.pairing_note("0.18.0", "0.18.2rc1.dev73") is None  # the manual run's pair
    assert "minors differ" in launch.pairing_note("0.30.0", "0.18.0")
