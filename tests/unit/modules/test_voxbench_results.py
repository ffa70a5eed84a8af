"""voxbench_results: a collected run's figures as facts and its rebuilt report, on a run bench_py ended."""

from __future__ import annotations

import json

import pytest

from bench_py.results.report import REPORT_NAME
from bench_py.run.state import StateStore
from tests.unit.modules.utils import fail_module, load_module, returned_docs, run_module, undocumented

results_module = load_module("voxbench_results")


def test_run_dir_is_required():
    assert fail_module(results_module, {"seal": True})["msg"] == "missing required arguments: run_dir"


def test_seal_must_be_a_boolean(tmp_path):
    result = fail_module(results_module, {"run_dir": str(tmp_path), "seal": "perhaps"})
    assert "seal" in result["msg"] and "bool" in result["msg"]


def test_the_facts_carry_what_bench_yml_and_the_api_read_and_the_report_is_written(ended_run):
    state_dir, run_id = ended_run
    run_dir = StateStore(state_dir).run_dir(run_id)
    result = run_module(results_module, {"run_dir": str(run_dir)})
    assert result["changed"] is True  # the first report
    facts = result["ansible_facts"]["voxbench_results"]
    assert facts["run_id"] == run_id and facts["run_dir"] == str(run_dir)
    assert facts["final_state"] == "ERROR_ABORTED"  # bench.yml fails the play on anything but DONE ...
    assert facts["reason"].startswith("preflight failed: the reference clip")  # ... and says why
    assert facts["verdict"] == "inconclusive" and facts["verdict_reason"].startswith("the run ended ERROR_ABORTED")
    assert facts["gemma_mode"] == "parallel" and facts["sealed"] is False
    assert facts["sides"] == {}  # nothing was timed
    assert facts["standins"] == {"candidate": False, "incumbent": False}
    assert result["report"] == str(run_dir / REPORT_NAME)
    assert run_id in (run_dir / REPORT_NAME).read_text()
    assert result["summary"][0] == f"run       {run_id}  (ERROR_ABORTED, gemma_mode=parallel)"
    assert result["summary"][-1] == f"files     {run_dir}"
    assert undocumented(results_module, result) == []
    documented = returned_docs(results_module)["ansible_facts"]["contains"]["voxbench_results"]["contains"]
    assert set(facts) == set(documented)  # every figure, and only those


def test_a_second_call_rebuilds_the_same_report_and_changes_nothing(ended_run):
    state_dir, run_id = ended_run
    run_dir = StateStore(state_dir).run_dir(run_id)
    first = run_module(results_module, {"run_dir": str(run_dir), "seal": True})
    again = run_module(results_module, {"run_dir": str(run_dir), "seal": True})
    assert first["changed"] is True and again["changed"] is False
    assert again["ansible_facts"] == first["ansible_facts"]
    assert not (run_dir / "scoring").exists()  # no takes from both engines: no listening session to seal


def test_check_mode_reads_the_figures_and_writes_nothing(ended_run):
    state_dir, run_id = ended_run
    run_dir = StateStore(state_dir).run_dir(run_id)
    before = sorted(p.name for p in run_dir.iterdir())
    result = run_module(results_module, {"run_dir": str(run_dir), "seal": True}, check_mode=True)
    assert result["changed"] is False
    assert result["ansible_facts"]["voxbench_results"]["final_state"] == "ERROR_ABORTED"
    assert sorted(p.name for p in run_dir.iterdir()) == before and REPORT_NAME not in before


def test_a_directory_without_measurements_fails_naming_the_file(tmp_path):
    result = fail_module(results_module, {"run_dir": str(tmp_path)})
    assert (
        result["msg"] == f"{tmp_path / 'measurements.json'} is missing: the run did not finish writing its measurements"
    )


def test_measurements_that_break_their_schema_fail_naming_the_field(ended_run):
    state_dir, run_id = ended_run
    path = StateStore(state_dir).run_dir(run_id) / "measurements.json"
    measurements = json.loads(path.read_text())
    del measurements["gemma_mode"]
    path.write_text(json.dumps(measurements))
    result = fail_module(results_module, {"run_dir": str(path.parent)})
    assert result["msg"].startswith("measurements gemma_mode: 'gemma_mode' is a required property")


def test_a_stored_verdict_the_files_do_not_give_fails_and_is_not_overwritten(ended_run):
    state_dir, run_id = ended_run
    path = StateStore(state_dir).run_dir(run_id) / "verdict.json"
    verdict = json.loads(path.read_text())
    tampered = json.dumps({**verdict, "verdict": "swap_candidate", "row": 6})
    path.write_text(tampered)
    result = fail_module(results_module, {"run_dir": str(path.parent)})
    assert result["msg"].startswith("verdict.json says swap_candidate (row 6) but the files give inconclusive (row 1)")
    assert path.read_text() == tampered
    assert not (path.parent / REPORT_NAME).exists()


def test_a_run_aborted_before_preflight_recorded_its_rule_still_gets_a_report(tmp_path):
    from bench_py.config.model import load
    from bench_py.files import atomic_write_json
    from bench_py.run.abort import request_abort
    from bench_py.run.phases import Run
    from bench_py.run.phases.context import PhaseFailed
    from bench_py.run.state import StateStore
    from tests.unit.modules.conftest import config_overrides

    config = load(config_overrides(tmp_path / "state"))
    store = StateStore(config.paths.state_dir)
    run_id = "BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000"
    store.create(run_id)
    run_dir = store.run_dir(run_id)
    atomic_write_json(run_dir / "config.json", config.model_dump(mode="json"))
    request_abort(run_dir, "operator", "aborted before anything was checked")
    with pytest.raises(PhaseFailed):
        Run(store, run_id, tmp_path / "project").run_phase("preflight")
    result = run_module(results_module, {"run_dir": str(run_dir)})
    assert result["ansible_facts"]["voxbench_results"]["final_state"] == "ERROR_ABORTED"
    assert "No rule was sealed" in (run_dir / "report.html").read_text()
