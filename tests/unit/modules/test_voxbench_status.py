"""voxbench_status: the host's runs and the lock holder, as the fact status.yml shows."""

from __future__ import annotations

import json

from bench_py.run.state import State, StateStore
from tests.unit.modules.utils import fail_module, load_module, returned_docs, run_module, undocumented

status_module = load_module("voxbench_status")


def test_state_dir_is_required():
    assert fail_module(status_module, {})["msg"] == "missing required arguments: state_dir"


def test_limit_must_be_an_integer(tmp_path):
    result = fail_module(status_module, {"state_dir": str(tmp_path), "limit": "many"})
    assert "limit" in result["msg"] and "int" in result["msg"]


def test_a_host_that_never_ran_anything_has_no_holder_and_no_runs_and_is_left_as_it_was(tmp_path):
    state_dir = tmp_path / "never-created"
    result = run_module(status_module, {"state_dir": str(state_dir)})
    assert result["changed"] is False
    assert result["ansible_facts"] == {"voxbench_status": {"holder": None, "runs": []}}
    assert not state_dir.exists()  # read-only: not even the directory is made


def test_the_holder_and_the_newest_runs_first_with_what_status_yml_shows(ended_run):
    state_dir, ended = ended_run
    store = StateStore(state_dir)
    store.create("BENCHMARK-VOXTRAL-UNIT-HOST-29991231-235959")  # newer than the ended one
    store.update("BENCHMARK-VOXTRAL-UNIT-HOST-29991231-235959", phase={"utterance": 1})
    status = run_module(status_module, {"state_dir": str(state_dir)})["ansible_facts"]["voxbench_status"]
    assert status["holder"] == "BENCHMARK-VOXTRAL-UNIT-HOST-29991231-235959"
    assert [(run["run_id"], run["state"]) for run in status["runs"]] == [
        ("BENCHMARK-VOXTRAL-UNIT-HOST-29991231-235959", "PREFLIGHT"),
        (ended, "ERROR_ABORTED"),
    ]
    assert undocumented(status_module, {"ansible_facts": {"voxbench_status": status}}) == []
    newest, older = status["runs"]
    documented = returned_docs(status_module)["ansible_facts"]["contains"]["voxbench_status"]["contains"]
    assert set(newest) == set(documented["runs"]["contains"])  # every field of a run, and only those
    assert newest["phase"] == {"utterance": 1} and newest["terminal"] is False and newest["collected"] is False
    assert older["terminal"] is True and older["reason"].startswith("preflight failed")
    store.mark_collected(ended)
    status = run_module(status_module, {"state_dir": str(state_dir), "limit": 1})["ansible_facts"]["voxbench_status"]
    assert [run["run_id"] for run in status["runs"]] == ["BENCHMARK-VOXTRAL-UNIT-HOST-29991231-235959"]


def test_an_unreadable_state_file_is_left_out_not_fatal(ended_run):
    state_dir, ended = ended_run
    store = StateStore(state_dir)
    store.create("RUN-TORN")
    store.transition("RUN-TORN", State.ERROR_ABORTED, "preflight failed")
    (store.run_dir("RUN-TORN") / "state.json").write_text('{"run_id": "RUN-TO')  # torn by hand
    status = run_module(status_module, {"state_dir": str(state_dir)})["ansible_facts"]["voxbench_status"]
    assert [run["run_id"] for run in status["runs"]] == [ended]
    json.loads((store.run_dir(ended) / "state.json").read_text())  # the readable one is untouched
