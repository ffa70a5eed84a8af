"""bench.yml end to end on the embedded default: real ansible-playbook, tmux, Docker, engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench_py.api import run_bench
from bench_py.audio import read_wav_file
from bench_py.config import default_utterances
from bench_py.run.measurements import read_measurements
from tests.helpers import ROOT, CanaryWatch, bench_containers
from tests.integration.conftest import CANARY

pytestmark = pytest.mark.docker

FIRST_AUDIO_DELAY_MS = 120.0  # what inventory/local's candidate command asks of the stand-in


def playbook(env: dict, *args: str, config: dict | None = None) -> subprocess.CompletedProcess[str]:
    """ansible-playbook bench.yml with no terminal (stdin closed), as CI and cron run it."""
    variables = {**env["extra"], "voxbench_config": {"profile": "fast", **env["config"], **(config or {})}}
    vars_file = env["tmp"] / "vars.json"
    vars_file.write_text(json.dumps(variables))
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        [str(bin_dir / "ansible-playbook"), "bench.yml", "-e", f"@{vars_file}", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )


def test_full_shape_run_through_the_python_api(bench_env, docker_client):
    result = run_bench(
        "parallel",
        config={"profile": "full", **bench_env["config"]},
        extra_vars=bench_env["extra"],
        private_data_dir=str(bench_env["tmp"] / "runner"),
    )
    assert result.final_state == "DONE", result.summary
    assert result.verdict == "pending_listening"
    assert result.run_id.startswith("BENCHMARK-VOXTRAL-")
    # The figures reached Python through runner_on_ok events, not the fact cache.
    ok_events = [
        e
        for e in result.events
        if e.get("event") == "runner_on_ok" and e["event_data"].get("task_action") == "voxbench_results"
    ]
    assert (
        ok_events and ok_events[0]["event_data"]["res"]["ansible_facts"]["voxbench_results"]["run_id"] == result.run_id
    )

    run_dir = Path(result.figures["run_dir"])
    measurements = read_measurements(run_dir / "measurements.json")  # schema-valid
    bench = measurements["bench"]
    utterances = default_utterances()
    assert bench["utterances"] == utterances and bench["repetitions"] == 5
    for side in ("candidate", "incumbent"):
        timed = [r for r in bench["records"][side] if not r["warmup"]]
        assert len(timed) == len(utterances) * 2 * 5
        for condition in ("cloned", "preset"):
            seen = {r["utterance"] for r in timed if r["condition"] == condition}
            assert seen == set(range(len(utterances)))
        for record in timed:
            assert record["ok"], record
            assert record["audio_s"] == pytest.approx(record["samples"] / record["sample_rate"])
            assert record["ttfa_ms"] <= record["total_ms"]
            if side == "candidate":
                assert FIRST_AUDIO_DELAY_MS < record["ttfa_ms"] < record["total_ms"]
        wav = run_dir / timed[0]["wav"]
        assert len(read_wav_file(str(wav)).samples) == timed[0]["samples"]
    memory = bench["memory"]["sources"]
    assert memory["cgroup"]["available"] and memory["cgroup"]["peak"] > 0  # the candidate container's cgroup
    assert memory["meminfo"]["available"]
    assert memory["nvml_device"] == {"available": False, "reason": memory["nvml_device"]["reason"]}  # no GPU here
    sweep = bench["load"]["sweep"]
    assert [level["concurrency"] for level in sweep["levels"]] == [1, 2, 4]
    assert bench["load"]["poisson"]["requests"] == 8
    assert all(r["ttfa_audible_ms"] >= r["ttfa_ms"] for r in bench["records"]["candidate"] if r["ok"])
    assert measurements["teardown"]["removal"]["verified"]
    assert measurements["baseline"]["latency_ms"]["n"] == 10
    assert measurements["preflight"]["rule"]["sha256"] == result.figures["rule_sha256"]
    assert bench_containers(docker_client) == []
    # The token never reached a file of the run or of ansible-runner.
    for folder in (run_dir, bench_env["tmp"] / "runner", bench_env["tmp"] / "state"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path


def test_missing_gemma_mode_without_a_terminal_fails_with_the_choices(bench_env, docker_client):
    result = playbook(bench_env)
    assert result.returncode != 0
    assert "gemma_mode is required and there is no terminal to ask on" in result.stdout
    assert "parallel or pause-gemma" in result.stdout
    assert bench_containers(docker_client) == []


def test_invalid_gemma_mode_is_refused(bench_env, docker_client):
    result = playbook(bench_env, "-e", "gemma_mode=sometimes")
    assert result.returncode != 0
    assert "gemma_mode must be one of: parallel, pause-gemma" in result.stdout
    assert bench_containers(docker_client) == []


def _aborted_in_preflight(env: dict, result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, result.stdout[-2000:]
    assert "ERROR_ABORTED" in result.stdout
    assert message in result.stdout, result.stdout[-3000:]
    runs = list((env["tmp"] / "runs").iterdir())
    measurements = read_measurements(runs[0] / "measurements.json")
    assert measurements["final_state"] == "ERROR_ABORTED"
    assert [h["to"] for h in measurements["history"]] == ["PREFLIGHT", "ERROR_ABORTED"]


def test_docker_unreachable_aborts_in_preflight(bench_env, docker_client):
    result = playbook(
        bench_env, "-e", "gemma_mode=parallel", config={"preflight": {"docker_url": "unix:///nonexistent/docker.sock"}}
    )
    _aborted_in_preflight(bench_env, result, "Docker does not answer at unix:///nonexistent/docker.sock")
    assert bench_containers(docker_client) == []


def test_port_taken_aborts_in_preflight(bench_env, docker_client):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", bench_env["config"]["candidate"]["port"]))
        holder.listen()
        result = playbook(bench_env, "-e", "gemma_mode=parallel")
    _aborted_in_preflight(
        bench_env, result, f"port {bench_env['config']['candidate']['port']} on 127.0.0.1 is already in use"
    )
    assert bench_containers(docker_client) == []


def test_missing_token_file_aborts_in_preflight(bench_env, docker_client):
    bench_env["token"].unlink()
    result = playbook(bench_env, "-e", "gemma_mode=parallel")
    _aborted_in_preflight(bench_env, result, "does not exist")
    assert bench_containers(docker_client) == []


def test_world_readable_token_file_aborts_in_preflight(bench_env, docker_client):
    bench_env["token"].chmod(0o644)
    result = playbook(bench_env, "-e", "gemma_mode=parallel")
    _aborted_in_preflight(bench_env, result, "is readable by others (mode 0644); run chmod 600")
    assert bench_containers(docker_client) == []
    assert CANARY not in result.stdout


@pytest.mark.under_load
def test_fast_profile_run_from_the_command_line(bench_env, docker_client):
    # The canary is watched for in every process's argv and environment and in the candidate
    # container's inspect and logs, all along the run (install path 2A).
    with CanaryWatch(CANARY, docker_client) as watch:
        result = playbook(bench_env, "-e", "gemma_mode=parallel")
    assert result.returncode == 0, result.stdout[-3000:]
    assert watch.hits == [] and watch.samples > 20, (watch.hits, watch.samples)
    assert watch.containers_seen, "the candidate container was never sampled"
    assert "verdict   pending_listening" in result.stdout
    assert "teardown  removed 1 container(s), 0 left" in result.stdout
    assert CANARY not in result.stdout + result.stderr
    assert bench_containers(docker_client) == []
    run = next((bench_env["tmp"] / "runs").iterdir())
    data = read_measurements(run / "measurements.json")
    ttfa = [r["ttfa_ms"] for r in data["bench"]["records"]["candidate"] if not r["warmup"]]
    assert np.all(np.array(ttfa) > FIRST_AUDIO_DELAY_MS)
