"""voxbench_launch: what the launcher does on the host short of starting a run in tmux (Docker,
tmux and the run itself are the integration tests' part)."""

from __future__ import annotations

import subprocess
import sys

from bench_py.config.model import load
from bench_py.run.state import StateStore
from bench_py.version import version_id
from tests.helpers import ROOT, free_port
from tests.unit.modules.conftest import config_overrides
from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

launch_module = load_module("voxbench_launch")


def launch_args(state_dir, **options) -> dict:
    config = load(config_overrides(state_dir)).model_dump(mode="json")
    return {"config": config, "project_dir": str(ROOT), "python": sys.executable, **options}


def test_config_project_dir_and_python_are_required():
    result = fail_module(launch_module, {"new_run": True})
    assert result["msg"] == "missing required arguments: config, project_dir, python"


def test_a_host_running_another_voxbench_is_refused_before_anything_is_read_or_written(tmp_path):
    state_dir = tmp_path / "state"
    result = fail_module(launch_module, launch_args(state_dir, expected_version="0.0.1+0123456789abcdef"))
    assert result["msg"] == (
        f"voxbench on this host is {version_id()} but the controller runs 0.0.1+0123456789abcdef; "
        "run setup.yml to install the controller's version, then bench again"
    )
    assert not state_dir.exists()


def test_the_run_holding_the_host_is_attached_to_not_started_again(tmp_path):
    state_dir = tmp_path / "state"
    store = StateStore(state_dir)
    store.create("BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000")
    result = run_module(launch_module, launch_args(state_dir, expected_version=version_id()))
    assert result["changed"] is False
    assert result["attached"] is True
    assert result["run_id"] == "BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000"
    assert result["run_dir"] == str(store.run_dir(result["run_id"]))
    assert sorted(p.name for p in (state_dir / "runs").iterdir()) == [result["run_id"]]  # no second run
    assert undocumented(launch_module, result) == []


def test_new_run_is_refused_while_a_run_holds_the_host_with_the_command_to_follow_it(tmp_path):
    state_dir = tmp_path / "state"
    StateStore(state_dir).create("BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000")
    result = fail_module(launch_module, launch_args(state_dir, new_run=True, tmux_session="bench"))
    assert result["msg"].startswith("run BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000 holds this host; ")
    assert "`ssh <host> -t tmux attach -t bench`" in result["msg"]


def test_a_run_that_ended_while_its_controller_was_away_is_attached_to_for_collection(ended_run):
    state_dir, run_id = ended_run
    result = run_module(launch_module, launch_args(state_dir))
    assert (result["run_id"], result["attached"], result["changed"]) == (run_id, True, False)
    assert result["run_dir"] == str(StateStore(state_dir).run_dir(run_id))


def test_check_mode_plans_on_the_host_starts_nothing_and_fails_with_the_plan_when_it_fails(tmp_path):
    state_dir = tmp_path / "state"
    args = launch_args(state_dir)
    # No Docker daemon and no co-tenant where this configuration says they are: the plan names both.
    args["config"]["preflight"]["docker_url"] = f"unix://{tmp_path}/no-docker.sock"
    args["config"]["cotenant"]["url"] = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    args["config"]["candidate"]["hf_cache_dir"] = str(tmp_path / "hf-cache")
    result = fail_module(launch_module, args, check_mode=True)
    plan = result["plan"]
    assert plan["ok"] is False and plan["facts"]["docker"]["answers"] is False
    failed = {check["check"] for check in plan["checks"] if check["ok"] is False}
    assert {"docker", "cotenant"} <= failed
    assert result["msg"] == f"the plan fails on this host:\n{result['plan_text']}"
    assert undocumented(launch_module, result) == []
    assert "(facts read on the host)" in result["plan_text"] and result["plan_text"].endswith("plan FAILS")
    assert not state_dir.exists()  # no run, no lock


def test_a_stale_run_that_needs_docker_to_recover_fails_saying_so_when_docker_does_not_answer(tmp_path):
    from bench_py.run.state import boot_id

    state_dir = tmp_path / "state"
    store = StateStore(state_dir)
    run_id = "BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000"
    store.create(run_id)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that ran and is gone: the run's dispatcher died
    store.update(run_id, changes={"dispatcher": {"pid": gone.pid, "pid_start": None, "host_boot_id": boot_id()}})
    args = launch_args(state_dir, expected_version=version_id())
    args["config"]["preflight"]["docker_url"] = f"unix://{tmp_path}/no-docker.sock"
    result = fail_module(launch_module, args)
    assert result["msg"].startswith(f"run {run_id}'s dispatcher is gone and its containers must be removed first")
    assert "start Docker and run again" in result["msg"]
