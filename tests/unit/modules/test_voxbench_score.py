"""voxbench_score: refusals before any page is served, on a run bench_py ended. Serving the page to
real listeners until the reveal is the integration tests' part (tests/integration/test_listening.py)."""

from __future__ import annotations

from bench_py.run.state import StateStore
from tests.unit.modules.utils import argument_spec, fail_module, load_module, run_module

score_module = load_module("voxbench_score")


def test_run_dir_is_required():
    assert fail_module(score_module, {"listeners": ["ana"]})["msg"] == "missing required arguments: run_dir"


def test_a_directory_without_a_collected_run_is_refused_before_a_session_is_opened(tmp_path):
    result = fail_module(score_module, {"run_dir": str(tmp_path)})
    assert result["msg"] == f"{tmp_path} holds no collected run (no measurements.json)"
    assert list(tmp_path.iterdir()) == []  # no scoring/ directory, no listener registered


def test_check_mode_is_not_supported_and_skips_before_writing(tmp_path):
    result = run_module(score_module, {"run_dir": str(tmp_path)}, check_mode=True)
    assert result["skipped"] is True and "does not support check mode" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_timed_nothing_cannot_be_listened_to_and_says_why(ended_run):
    state_dir, run_id = ended_run
    run_dir = StateStore(state_dir).run_dir(run_id)
    result = fail_module(score_module, {"run_dir": str(run_dir), "listeners": ["ana"]})
    assert result["msg"] == f"{run_dir} has no utterance saved by both engines: nothing to compare"
    assert not (run_dir / "scoring" / "server.json").exists()  # no page was served


def test_the_options_are_those_documented():
    spec = argument_spec(score_module)
    assert set(spec) == {"run_dir", "listeners", "port", "close"}
    assert spec["listeners"]["default"] == [] and spec["port"]["default"] == 0 and spec["close"]["default"] is False
