"""voxbench_config: the configuration resolved on the controller, as every playbook's first task does."""

from __future__ import annotations

from bench_py.version import version_id
from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

config_module = load_module("voxbench_config")


def test_gemma_mode_is_one_of_two_choices():
    result = fail_module(config_module, {"gemma_mode": "serial"})
    assert result["msg"] == "value of gemma_mode must be one of: parallel, pause-gemma, got: serial"


def test_overrides_must_be_a_mapping():
    result = fail_module(config_module, {"overrides": ["gemma_mode", "parallel"], "gemma_mode": "parallel"})
    assert "overrides" in result["msg"] and "dict" in result["msg"]


def test_the_defaults_resolve_with_every_field_the_roles_read():
    result = run_module(config_module, {"gemma_mode": "parallel"})
    assert result["changed"] is False
    assert result["version_id"] == version_id()
    config = result["config"]
    assert config["gemma_mode"] == "parallel" and config["profile"] == "full"
    # status.yml, abort.yml, the watcher and the collector: the host's state directory.
    assert config["paths"]["state_dir"] and config["paths"]["token_file"]
    # voxbench_prefetch: the model and the cache it fills.
    assert config["candidate"]["model"] and "hf_cache_dir" in config["candidate"]
    assert "plan" not in result and "plan_text" not in result
    assert undocumented(config_module, result) == []


def test_overrides_merge_deeply_and_the_gemma_mode_option_wins(tmp_path):
    overrides = {"gemma_mode": "parallel", "paths": {"state_dir": str(tmp_path)}}
    result = run_module(config_module, {"overrides": overrides, "gemma_mode": "pause-gemma"})
    assert result["config"]["gemma_mode"] == "pause-gemma"
    assert result["config"]["paths"]["state_dir"] == str(tmp_path)
    default = run_module(config_module, {"gemma_mode": "parallel"})["config"]
    assert result["config"]["paths"]["token_file"] == default["paths"]["token_file"]  # its sibling kept


def test_a_configuration_without_gemma_mode_fails_saying_how_to_choose():
    result = fail_module(config_module, {})
    assert result["msg"] == "invalid voxbench configuration: gemma_mode: required; choose one of parallel, pause-gemma"


def test_every_bad_key_is_named():
    overrides = {"candidate": {"colour": "blue"}, "bench": {"repetitions": "five"}}
    result = fail_module(config_module, {"overrides": overrides, "gemma_mode": "parallel"})
    assert result["msg"].startswith("invalid voxbench configuration: ")
    assert "candidate.colour: unknown key" in result["msg"]
    assert "bench.repetitions: " in result["msg"]


def test_plan_returns_the_configuration_only_plan_and_its_text_also_in_check_mode():
    result = run_module(config_module, {"gemma_mode": "parallel", "plan": True}, check_mode=True)
    plan = result["plan"]
    assert isinstance(plan["ok"], bool) and plan["host"] is None and plan["facts"] is None
    assert plan["cotenant"]["gemma_mode"] == "parallel"
    assert {check["check"] for check in plan["checks"]}  # every check is listed with its outcome
    assert result["plan_text"].startswith("== configuration (configuration only: the host was not asked)")
    assert result["plan_text"].endswith("plan passes" if plan["ok"] else "plan FAILS")
    assert undocumented(config_module, result) == []
