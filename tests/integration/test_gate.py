"""Production is never silently hurt: the gate, operator aborts, lost controllers, pause-gemma."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from bench_py.run.measurements import read_measurements
from bench_py.run.state import StateStore
from tests.helpers import ROOT, bench_containers

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent


def start_playbook(env: dict, *args: str, config: dict | None = None) -> subprocess.Popen:
    variables = {**env["extra"], "voxbench_config": {"profile": "fast", **env["config"], **(config or {})}}
    vars_file = env["tmp"] / f"vars-{time.monotonic_ns()}.json"
    vars_file.write_text(json.dumps(variables))
    return subprocess.Popen(
        [str(BIN / "ansible-playbook"), "bench.yml", "-e", f"@{vars_file}", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )


def start_cli(env: dict, config: dict, gemma_mode: str) -> subprocess.Popen:
    """``voxbench bench`` as a user types it: the fast profile, the test's host state and ``config``."""
    config_file = env["tmp"] / "config.yml"
    config_file.write_text(yaml.safe_dump({"profile": "fast", **env["config"], **config}))
    variables = [f"--var={k}={v}" for k, v in env["extra"].items()]
    return subprocess.Popen(
        [str(BIN / "voxbench"), "bench", "--gemma-mode", gemma_mode, "--config", str(config_file), *variables],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )


def wait_for_state(env: dict, wanted: set[str], timeout_s: float = 120) -> str:
    """The run id once the host's run reaches one of ``wanted`` states."""
    store = StateStore(env["config"]["paths"]["state_dir"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for state_file in (store.root / "runs").glob("*/state.json") if (store.root / "runs").is_dir() else []:
            state = store.load(state_file.parent.name)
            if str(state.state) in wanted:
                return state.run_id
        time.sleep(0.1)
    raise TimeoutError(f"no run reached {wanted} within {timeout_s} s")


def wait_for_timed_requests(env: dict, run_id: str, timeout_s: float = 120) -> None:
    """Until BENCHING reports its first timed utterance: its gate has been probing since the
    phase's module started (the state turns BENCHING a moment before that, at the end of STARTING)."""
    store = StateStore(env["config"]["paths"]["state_dir"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        phase = store.load(run_id).phase or {}
        if phase.get("name") == "BENCHING" and phase.get("utterance"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} reported no timed request within {timeout_s} s")


def wait_terminal(env: dict, run_id: str, timeout_s: float = 180) -> str:
    store = StateStore(env["config"]["paths"]["state_dir"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = store.load(run_id)
        if state.terminal:
            return str(state.state)
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not end within {timeout_s} s")


def host_measurements(env: dict, run_id: str) -> dict:
    return read_measurements(Path(env["config"]["paths"]["state_dir"]) / "runs" / run_id / "measurements.json")


@pytest.fixture
def degrade(production_standins):
    url = production_standins["cotenant_url"].replace("/v1/chat/completions", "/admin/degrade")

    def apply(**body):
        assert httpx.post(url, json=body).status_code == 200

    yield apply
    httpx.post(url, json={"factor": 1.0, "fail": False})


# Exactly 2x is the gate's line (it trips when the p50 passes it): the first case is just past it.
@pytest.mark.under_load
@pytest.mark.parametrize("slowdown", [2.5, 3.0], ids=["past-2x", "3x"])
def test_a_slowed_cotenant_trips_the_gate_within_two_probe_intervals(bench_env, degrade, docker_client, slowdown):
    """Expected: the co-tenant's completions become ``slowdown`` times slower mid-BENCHING; the
    gate trips within the detection delay docs/gate.md derives (two probe intervals while a slowed
    probe takes less than one, its own latency beyond that); teardown verified, no container; the run ends
    ERROR_ABORTED by transition 9, and post-flight finds the co-tenant back within bounds."""
    interval = 0.5
    process = start_playbook(
        bench_env,
        "-e",
        "gemma_mode=parallel",
        config={
            "bench": {**bench_env["config"]["bench"], "repetitions": 20},
            "cotenant": {**bench_env["config"]["cotenant"], "gate": {"interval_s": interval}},
        },
    )
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    time.sleep(1.0)  # at least two healthy probes in the gate's window
    degrade(slowdown=slowdown)
    slowed_at = dt.datetime.now(dt.UTC)
    run_dir = Path(bench_env["config"]["paths"]["state_dir"]) / "runs" / run_id
    deadline = time.monotonic() + 30
    while not (run_dir / "abort.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    flag = json.loads((run_dir / "abort.json").read_text())
    degrade(slowdown=1.0)  # production recovers once the benchmark is gone
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert flag["by"] == "cotenant_gate"
    delay = (dt.datetime.fromisoformat(flag["at"]) - slowed_at).total_seconds()
    data = host_measurements(bench_env, run_id)
    assert data["final_state"] == "ERROR_ABORTED" and "co-tenant gate tripped" in data["reason"]
    assert [h["to"] for h in data["history"]][-1] == "ERROR_ABORTED"
    assert data["history"][-1]["transition"] == 9
    assert data["teardown"]["removal"]["verified"]
    assert data["teardown"]["postflight"]["ok"]
    assert bench_containers(docker_client) == []
    assert "co-tenant gate tripped" in output
    # The trip explains itself: the co-tenant's own (server-side) time passed the line, not the path.
    assert flag["evidence"]["cause"] == "cotenant" and "; cause cotenant: the co-tenant itself slowed" in flag["reason"]
    trip = next(phase["trip"] for phase in data["cotenant"]["gate"] if phase["tripped"])
    assert trip["reason"] == flag["reason"] and trip["cause"] == "cotenant"
    assert trip["server_p50_ms"] + trip["baseline_path_ms"] > trip["line_ms"] == 2 * trip["baseline_p50_ms"]
    assert len(trip["window"]) == 3 and all(p["server_source"] == "header" for p in trip["window"])
    # The detection delay of docs/gate.md, L a slowed probe's latency: from the first probe over the line
    # (ceil(w/2) - 1) * max(i, L) + L, and from the slowdown up to one max(i, L) more. Two intervals while
    # a slowed probe takes less than one; when it takes longer (3x on a busy machine: ~0.75 s against a
    # 0.5 s interval), no probe can come back sooner than its own latency.
    slowed_s = max(probe["latency_ms"] for probe in trip["window"]) / 1000
    step_s = max(interval, slowed_s)
    assert 0 < trip["detection_delay_s"] <= step_s + slowed_s + 0.1, (trip["detection_delay_s"], slowed_s)
    assert delay <= 2 * step_s + slowed_s + 0.1, (delay, slowed_s)


def test_a_killed_controller_leaves_the_run_going_and_the_next_bench_collects_it(bench_env, docker_client):
    process = start_playbook(
        bench_env, "-e", "gemma_mode=parallel", config={"bench": {**bench_env["config"]["bench"], "repetitions": 3}}
    )
    run_id = wait_for_state(bench_env, {"BENCHING"})
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Ansible's workers detach into sessions of their own (setsid), so they outlive killpg as
    # they would a user's kill -9; this test's own leftovers are removed by the vars file they name.
    vars_file = str(process.args[3]).removeprefix("@")
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and vars_file.encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
    assert wait_terminal(bench_env, run_id) == "DONE"  # the host finished on its own
    again = start_playbook(bench_env, "-e", "gemma_mode=parallel")
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output[-3000:]
    assert f"run       {run_id}" in output  # attached to the run that ended meanwhile, and collected it
    assert (bench_env["tmp"] / "runs" / run_id / "measurements.json").is_file()
    assert bench_containers(docker_client) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_on_the_cli_aborts_the_hosts_run(bench_env, docker_client, signum):
    process = start_cli(bench_env, {"bench": {**bench_env["config"]["bench"], "repetitions": 20}}, "parallel")
    run_id = wait_for_state(bench_env, {"BENCHING"})
    process.send_signal(signum)  # Ctrl-C, or `kill` / a service manager stopping the controller
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 130, output[-3000:]
    assert "cancelled on the controller" in output
    assert wait_terminal(bench_env, run_id, 60) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "operator" and "operator" in data["reason"]
    assert data["teardown"]["removal"]["verified"]
    assert bench_containers(docker_client) == []


def test_pause_gemma_restarts_the_cotenant_even_when_the_candidate_fails(bench_env, production_standins, docker_client):
    process = start_playbook(
        bench_env,
        "-e",
        "gemma_mode=pause-gemma",
        config={"candidate": {**bench_env["config"]["candidate"], "image": "vb/no-image:1", "install_paths": ["2A"]}},
    )
    output, _ = process.communicate(timeout=180)
    run_id = wait_for_state(bench_env, {"DONE", "ERROR_ABORTED"}, 5)
    data = host_measurements(bench_env, run_id)
    assert data["install_paths"]["selected"] is None
    (path,) = data["install_paths"]["paths"]
    assert path["status"] == "blocked" and "is not on this host" in path["reason"]
    assert data["cotenant"]["paused"]["restored"] is True
    restore = data["teardown"]["cotenant_restore"]
    assert restore["ok"] and restore["answered_after_s"] is not None
    assert data["teardown"]["postflight"]["ok"], data["teardown"]["postflight"]
    assert docker_client.containers.get(production_standins["cotenant_container"]).status == "running"
    assert (
        httpx.post(
            production_standins["cotenant_url"], json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30
        ).status_code
        == 200
    )
    assert bench_containers(docker_client) == []
    assert "inconclusive" in output


def test_an_explicit_second_run_is_refused_with_the_way_to_attach(bench_env, docker_client):
    first = start_playbook(
        bench_env, "-e", "gemma_mode=parallel", config={"bench": {**bench_env["config"]["bench"], "repetitions": 20}}
    )
    run_id = wait_for_state(bench_env, {"BASELINE", "STARTING", "BENCHING"})
    second = start_playbook(bench_env, "-e", "gemma_mode=parallel", "-e", "new_run=true")
    output, _ = second.communicate(timeout=120)
    assert second.returncode != 0
    assert f"run {run_id} holds this host" in output and "tmux attach -t voxbench-test" in output
    # Operator abort through abort.yml ends the first run early.
    variables = {**bench_env["extra"], "voxbench_config": {"profile": "fast", **bench_env["config"]}}
    (bench_env["tmp"] / "abort-vars.json").write_text(json.dumps(variables))
    aborted = subprocess.run(
        [str(BIN / "ansible-playbook"), "abort.yml", "-e", f"@{bench_env['tmp'] / 'abort-vars.json'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    assert aborted.returncode == 0, aborted.stdout[-2000:]
    first.communicate(timeout=120)
    assert StateStore(bench_env["config"]["paths"]["state_dir"]).load(run_id).reason.startswith("operator")
    assert bench_containers(docker_client) == []
