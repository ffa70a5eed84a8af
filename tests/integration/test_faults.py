"""Faults injected for real during whole runs (docs/faults.md lists each with its test). For each,
the expected end state is written first, then asserted."""

from __future__ import annotations

import json
import os
import signal

import pytest

from bench_py.audio import read_wav_file
from bench_py.config.model import default_config
from bench_py.run.state import StateStore
from tests.helpers import bench_containers, fill_disk, free_port, small_tmpfs, wait_healthy
from tests.integration.test_gate import (
    host_measurements,
    start_playbook,
    wait_for_state,
    wait_for_timed_requests,
    wait_terminal,
)

pytestmark = pytest.mark.docker


def test_a_candidate_container_killed_mid_run_aborts_and_tears_down(bench_env, docker_client):
    """Expected: ERROR_ABORTED by engine_failure from BENCHING; teardown verified; no container;
    the controller exits non-zero; the co-tenant within bounds afterwards."""
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}}
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    (engine,) = docker_client.containers.list(filters={"label": f"io.voxbench.run-id={run_id}"})
    engine.kill()  # SIGKILL from outside, as an OOM killer or an operator would
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "engine_failure" and "exit code 137" in data["reason"]
    assert [h["to"] for h in data["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert data["teardown"]["postflight"]["ok"]
    assert "engine_failure" in output


def test_a_hanging_engine_times_out_and_the_verdict_is_inconclusive(bench_env, docker_client):
    """Expected: every timed candidate request ends at the 1 s read timeout and is recorded as a
    timeout (none dropped); the run itself completes (DONE) and the verdict is inconclusive, row 1."""
    command = [*default_config()["candidate"]["command"], "--first-audio-delay-ms", "3000"]
    config = {
        "candidate": {**bench_env["config"]["candidate"], "command": command, "install_paths": ["2A"]},
        "bench": {**bench_env["config"]["bench"], "timeouts": {"read": 1.0}},
    }
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    process.communicate(timeout=240)
    (run_dir,) = (bench_env["tmp"] / "runs").iterdir()
    data = json.loads((run_dir / "measurements.json").read_text())
    timed = [r for r in data["bench"]["records"]["candidate"] if not r["warmup"]]
    assert timed and all(r["timed_out"] and not r["ok"] for r in timed)
    assert all(1000 <= r["total_ms"] < 2500 for r in timed)  # ended by the read timeout, not the engine
    assert data["final_state"] == "DONE" and data["bench"]["phase3_passed"] is False
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "inconclusive" and verdict["row"] == 1
    assert "timed out" in verdict["reason"]
    assert bench_containers(docker_client) == []


@pytest.fixture
def own_cotenant(docker_client, standin_images, test_run_label):
    """A co-tenant this test may let die (the session's production one stays up for the others)."""
    port = free_port()
    container = docker_client.containers.run(
        standin_images["cotenant"],
        detach=True,
        cpuset_cpus="0",
        labels={test_run_label: "fault-cotenant"},
        ports={"8000/tcp": ("127.0.0.1", port)},
    )
    wait_healthy(f"http://127.0.0.1:{port}/health")
    yield {"url": f"http://127.0.0.1:{port}/v1/chat/completions", "container": container}
    container.remove(force=True)


def test_a_cotenant_that_dies_is_reported_and_never_restarted(bench_env, docker_client, own_cotenant):
    """Expected: the gate sees it stop answering and aborts the run (ERROR_ABORTED from BENCHING,
    teardown verified); post-flight reports the co-tenant did not come back; voxbench does not
    restart it (it never starts what it did not stop): the container is still stopped."""
    cotenant = {
        **bench_env["config"]["cotenant"],
        "url": own_cotenant["url"],
        "control": {"kind": "container", "name": own_cotenant["container"].name},
        "postflight_window_s": 3,
    }
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}, "cotenant": cotenant}
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    own_cotenant["container"].stop(timeout=1)  # production's LLM dies on its own
    process.communicate(timeout=180)
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "cotenant_gate" and "unreachable" in data["reason"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert data["teardown"]["postflight"]["ok"] is False
    assert data["cotenant"]["paused"] is None  # voxbench had not paused it ...
    own_cotenant["container"].reload()
    assert own_cotenant["container"].status == "exited"  # ... so it did not restart it


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_to_the_host_side_run_is_an_operator_abort(bench_env, docker_client, signum):
    """Expected: SIGTERM (kill, a service manager) or SIGINT to the run's shell on the host raises
    the abort flag; the phases tear down to ERROR_ABORTED (by operator); the shell waits for them
    and then exits; the controller following the run reports the abort."""
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}}
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    store = StateStore(bench_env["config"]["paths"]["state_dir"])
    shell = store.load(run_id).changes["dispatcher"]["pid"]
    os.kill(shell, signum)
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0 and "operator abort" in output
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "operator" and "sent a signal" in data["reason"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert data["teardown"]["postflight"]["ok"]


def test_a_disk_that_fills_up_mid_run_aborts_and_keeps_every_whole_file(bench_env, docker_client):
    """Expected: the host's state directory is a small disk that something else fills during
    BENCHING. The first write that meets it (a WAV, the progress in the state file) aborts the
    run by disk_full: the reserve is released, the requests already taken are kept in a partial
    bench.json with their WAVs, teardown removes the engine and the co-tenant is within bounds;
    no file is half there and no temporary is left; the file that filled the disk is untouched."""
    state_dir = bench_env["tmp"] / "state"
    config = {
        "bench": {**bench_env["config"]["bench"], "repetitions": 20},
        "preflight": {"min_free_disk_gb": 0.005, "disk_reserve_mb": 4},
    }
    with small_tmpfs(state_dir, "16m"):
        process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
        run_id = wait_for_state(bench_env, {"BENCHING"})
        wait_for_timed_requests(bench_env, run_id)
        filled = fill_disk(state_dir)  # a log growing beside the run, say
        output, _ = process.communicate(timeout=180)
        assert process.returncode != 0 and "disk is full" in output
        assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
        run_dir = state_dir / "runs" / run_id
        data = host_measurements(bench_env, run_id)
        assert data["abort"]["by"] == "disk_full" and "No space left on device" in data["reason"]
        assert data["abort"]["evidence"]["reserve_released_bytes"] == 4 << 20
        assert data["abort"]["evidence"]["path"].startswith(str(run_dir))  # the WAV or state it was writing
        assert [h["to"] for h in data["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
        assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
        assert data["teardown"]["postflight"]["ok"]
        kept = data["bench"]
        assert kept["partial"] and kept["phase3_passed"] is False
        timed = [r for r in kept["records"]["candidate"] if not r["warmup"]]
        assert len(timed) >= 20 and all(r["ok"] for r in timed)  # the first utterance's, at least
        wavs = [r["wav"] for rs in kept["records"].values() for r in rs if r.get("wav")]
        assert wavs
        for record in (r for rs in kept["records"].values() for r in rs if r.get("wav")):
            assert len(read_wav_file(str(run_dir / record["wav"])).samples) == record["samples"]
        on_disk = {str(p.relative_to(run_dir)) for p in (run_dir / "wavs").rglob("*.wav")}
        assert on_disk == set(wavs)  # every WAV whole and accounted for; none half-written
        assert [p.name for p in run_dir.rglob(".*")] == []  # no temporary, the reserve released
        verdict = json.loads((run_dir / "verdict.json").read_text())
        assert verdict["verdict"] == "inconclusive" and verdict["row"] == 1
        assert (state_dir / "filler.bin").stat().st_size == filled
        # The full disk cannot hold the collector's pack: the run is fetched file by file, all of it.
        assert "fetching file by file" in output
        collected = bench_env["tmp"] / "runs" / run_id
        on_host = {p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()}
        assert on_host <= {p.relative_to(collected) for p in collected.rglob("*") if p.is_file()}
        # The takes byte for byte (state.json and verdict.json move on after the fetch, by design).
        for wav in (p for p in on_host if p.suffix == ".wav"):
            assert (collected / wav).read_bytes() == (run_dir / wav).read_bytes(), wav
        assert not list(state_dir.glob("collect-*.tar"))  # the pack the disk cut short is gone
