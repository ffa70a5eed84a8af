"""voxbench_abort: the operator's abort flag written into the run holding the host, as abort.yml does."""

from __future__ import annotations

import shutil
import threading
import time

from bench_py.run.abort import FLAG, read_abort
from bench_py.run.state import State, StateStore
from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

abort_module = load_module("voxbench_abort")


def test_state_dir_is_required():
    assert fail_module(abort_module, {"reason": "x"})["msg"] == "missing required arguments: state_dir"


def test_wait_s_must_be_a_number(tmp_path):
    result = fail_module(abort_module, {"state_dir": str(tmp_path), "wait_s": "a while"})
    assert "wait_s" in result["msg"] and "float" in result["msg"]


def test_nothing_to_abort_when_no_run_holds_the_host(tmp_path):
    result = run_module(abort_module, {"state_dir": str(tmp_path)})
    assert result == {"changed": False, "run_id": None, "state": None, "msg": "no run in progress"}


def test_an_ended_run_is_not_aborted_again(ended_run):
    state_dir, run_id = ended_run
    result = run_module(abort_module, {"state_dir": str(state_dir), "run_id": run_id, "wait_s": 0})
    assert result["changed"] is False and result["run_id"] == run_id
    assert result["state"] == "ERROR_ABORTED" and result["msg"] == "no run in progress"
    assert read_abort(StateStore(state_dir).run_dir(run_id)) is None


def test_check_mode_says_it_would_abort_the_holder_and_writes_nothing(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    result = run_module(abort_module, {"state_dir": str(tmp_path)}, check_mode=True)
    assert result == {"changed": True, "run_id": "RUN-1", "state": "PREFLIGHT"}
    assert not (store.run_dir("RUN-1") / FLAG).exists()


def test_the_flag_names_the_operator_and_the_reason_and_a_second_call_changes_nothing(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    args = {"state_dir": str(tmp_path), "reason": "Ctrl-C on the controller", "wait_s": 0}
    result = run_module(abort_module, args)
    assert result == {"changed": True, "run_id": "RUN-1", "state": "PREFLIGHT"}  # nobody tore it down yet
    flag = read_abort(store.run_dir("RUN-1"))
    assert flag["by"] == "operator" and flag["reason"] == "Ctrl-C on the controller"
    again = run_module(abort_module, {**args, "reason": "a second thought"})
    assert again["changed"] is False
    assert read_abort(store.run_dir("RUN-1"))["reason"] == "Ctrl-C on the controller"  # the first reason counts


def test_it_waits_for_the_host_to_tear_the_run_down(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    store.transition("RUN-1", State.BASELINE, "preflight passed")

    def host_side_run() -> None:  # what the phases do between requests: see the flag, end the run
        deadline = time.monotonic() + 20
        while read_abort(store.run_dir("RUN-1")) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        store.transition("RUN-1", State.ERROR_ABORTED, "operator: abort requested")

    host = threading.Thread(target=host_side_run, daemon=True)
    host.start()
    result = run_module(abort_module, {"state_dir": str(tmp_path), "wait_s": 20})
    host.join(timeout=20)
    assert result == {"changed": True, "run_id": "RUN-1", "state": "ERROR_ABORTED"}
    assert store.holder() is None
    assert undocumented(abort_module, result) == []


def test_an_unknown_run_or_a_lock_naming_a_removed_run_fails_saying_so(tmp_path):
    unknown = fail_module(abort_module, {"state_dir": str(tmp_path), "run_id": "RUN-404"})
    assert unknown["msg"].startswith("cannot abort: ")
    store = StateStore(tmp_path)
    store.create("RUN-1")
    shutil.rmtree(store.run_dir("RUN-1"))  # the lock still names it
    stale = fail_module(abort_module, {"state_dir": str(tmp_path)})
    assert stale["msg"].startswith("cannot abort: ")


def test_a_run_whose_process_is_gone_is_torn_down_by_the_abort_itself(tmp_path):
    """The run's tmux pane died with it (its close-unfinished step too): nothing would ever read the
    flag, so the module runs the run's own teardown and the run ends ERROR_ABORTED, files written."""
    import subprocess

    from bench_py.config.model import load
    from bench_py.files import atomic_write_json
    from bench_py.processes import process_start
    from tests.unit.modules.conftest import config_overrides

    RUN_ID = "BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000"
    config = load(config_overrides(tmp_path / "state"))
    store = StateStore(config.paths.state_dir)
    store.create(RUN_ID)
    atomic_write_json(store.run_dir(RUN_ID) / "config.json", config.model_dump(mode="json"))
    gone = subprocess.Popen(["sleep", "0"])
    start = process_start(gone.pid)
    gone.wait()
    dispatcher = {"pid": gone.pid, "pid_start": start, "project_dir": str(tmp_path / "project")}
    store.update(RUN_ID, changes={"dispatcher": dispatcher})
    args = {"state_dir": str(store.root), "reason": "Ctrl-C on the controller", "wait_s": 5}
    result = run_module(abort_module, args)
    assert result == {"changed": True, "run_id": RUN_ID, "state": "ERROR_ABORTED", "closed_here": True}
    state = store.load(RUN_ID)
    assert state.changes.get("files_written") and (store.run_dir(RUN_ID) / "measurements.json").is_file()
    assert state.reason.startswith("operator abort: Ctrl-C on the controller (the run's process was gone")
    assert undocumented(abort_module, result) == []
