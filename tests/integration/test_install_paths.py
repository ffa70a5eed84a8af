"""Install paths 2A–2D on the embedded default: statuses with evidence, the right latency
semantics per path, a foreign-platform image blocked without being run, the noise gate, the
license gate, and a canary token that never shows up anywhere while a run goes on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench_py.config.model import default_config
from bench_py.run.measurements import read_measurements
from bench_py.standins import registry
from tests.helpers import CanaryWatch, bench_containers, free_port
from tests.integration.conftest import CANARY
from tests.integration.test_pipeline import playbook

pytestmark = pytest.mark.docker

#: vLLM-Omni's own launch line, as the candidate image answers it (stand-in knobs are appended).
DEFAULT_2A_COMMAND = default_config()["candidate"]["command"]

#: vllm-omni without --omni is plain vLLM, which has no implementation of Voxtral: it says so and exits.
REFUSING_2B_COMMAND = [
    "{python}", "-m", "bench_py.standins.vllm_omni_cli", "--standin-release", "0.30.0",
    "serve", "{model}", "--host", "127.0.0.1", "--port", "{port}",
]  # fmt: skip


def engine_sessions() -> list[str]:
    listed = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True)
    return [name for name in listed.stdout.split() if name.startswith("voxbench-benchmark-")]


def only_run(env: dict) -> tuple[Path, dict]:
    (run_dir,) = (env["tmp"] / "runs").iterdir()
    return run_dir, read_measurements(run_dir / "measurements.json")


def by_path(measurements: dict) -> dict[str, dict]:
    return {p["install_path"]: p for p in measurements["install_paths"]["paths"]}


@pytest.fixture(scope="module")
def foreign_image(tmp_path_factory):
    """An image whose only platform is another architecture, in a real registry on loopback."""
    port = free_port()
    process = registry.start(tmp_path_factory.mktemp("registry"), port)
    try:
        yield registry.push_foreign_image(port, "vllm/vllm-omni", "v0.18.0")
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from bench_py.standins.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-vits"))


def test_foreign_image_blocked_then_2b_process_streams_and_the_token_never_shows(
    bench_env, docker_client, foreign_image
):
    config = {"candidate": {**bench_env["config"]["candidate"], "image": foreign_image, "install_paths": ["2A", "2B"]}}
    with CanaryWatch(CANARY, docker_client) as watch:
        result = playbook(bench_env, "-e", "gemma_mode=parallel", "-vvv", config=config)
    assert result.returncode == 0, result.stdout[-3000:]
    run_dir, measurements = only_run(bench_env)
    paths = by_path(measurements)
    assert paths["2A"]["status"] == "blocked"
    assert f"built for linux/{registry.foreign_architecture()} only" in paths["2A"]["reason"]
    assert "registry manifest" in " ".join(paths["2A"]["evidence"])
    assert not any(foreign_image in str(c.image.tags) for c in docker_client.containers.list(all=True))
    assert paths["2B"]["status"] == "ok" and paths["2B"]["kind"] == "process"
    assert measurements["install_paths"]["selected"] == "2B"
    bench = measurements["bench"]
    assert bench["install_path"] == "2B" and bench["streaming_capable"] is True
    assert all(r["ttfa_ms"] is not None for r in bench["records"]["candidate"] if r["ok"])
    # The engine process got the token's path, never the token.
    assert watch.engine_environments, f"the 2B engine was never seen in {watch.samples} samples"
    engine_env = watch.engine_environments[0]
    assert engine_env["HF_TOKEN_PATH"] == str(bench_env["token"].resolve()) and "HF_TOKEN" not in engine_env
    assert watch.hits == [], watch.hits
    assert watch.samples > 20
    assert CANARY not in result.stdout + result.stderr  # -vvv included
    removal = measurements["teardown"]["removal"]
    assert removal["verified"] and removal["processes"][0]["verified"]
    assert engine_sessions() == [] and bench_containers(docker_client) == []
    assert "logs/voxbench-benchmark-" in json.dumps(measurements["teardown"]["engine_logs"])
    for path in [*run_dir.rglob("*"), *(bench_env["tmp"] / "state").rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    checkout = Path(bench_env["extra"]["voxbench_artifacts_repo"])
    if checkout.exists():
        history = subprocess.run(
            ["git", "-C", str(checkout), "log", "--all", "-p"], capture_output=True, text=True, check=True
        )
        assert CANARY not in history.stdout


def test_untrained_transformers_model_fails_the_sanity_check_then_2d_batch_gives_total_latency(
    bench_env, docker_client, tiny_model
):
    candidate = {
        **bench_env["config"]["candidate"],
        "install_paths": ["2C", "2D"],
        "in_process": {"loader": "transformers", "model_path": str(tiny_model), "voice": None},
    }
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config={"candidate": candidate})
    assert result.returncode == 0, result.stdout[-3000:]
    _, measurements = only_run(bench_env)
    paths = by_path(measurements)
    assert paths["2C"]["status"] == "failed", paths["2C"]
    # Random weights: a saturated buzz with no pitch. Whatever the reason, it is "not speech".
    assert paths["2C"]["sanity"]["ok"] is False
    assert any(word in paths["2C"]["reason"] for word in ("noise-like", "clipped", "no voiced")), paths["2C"]
    assert paths["2C"]["engine"]["versions"]["architecture"] == "VitsModel"  # the real loader ran
    assert paths["2D"]["status"] == "ok" and paths["2D"]["streaming_capable"] is False
    bench = measurements["bench"]
    timed = [r for r in bench["records"]["candidate"] if not r["warmup"]]
    assert timed and all(r["ok"] and r["ttfa_ms"] is None and r["total_ms"] > 0 for r in timed)
    assert bench["summary"]["candidate"]["cloned"]["total_synthesis_latency_ms"]["n"] == len(timed) // 2
    verdict = json.loads((only_run(bench_env)[0] / "verdict.json").read_text())
    assert verdict["verdict"] == "aarch64_vllm_omni_unverified" and verdict["row"] == 4


def test_in_process_espeak_passes_and_later_paths_are_skipped(bench_env, docker_client):
    candidate = {**bench_env["config"]["candidate"], "install_paths": ["2C", "2D"]}
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config={"candidate": candidate})
    assert result.returncode == 0, result.stdout[-3000:]
    _, measurements = only_run(bench_env)
    paths = by_path(measurements)
    assert paths["2C"]["status"] == "ok" and paths["2C"]["sanity"]["ok"]
    assert paths["2C"]["engine"]["versions"]["libespeak-ng"]
    assert paths["2D"] == {**paths["2D"], "status": "skipped", "reason": "install path 2C passed first"}
    assert measurements["bench"]["memory"]["sources"]["process_rss"]["available"]
    assert measurements["bench"]["engine_loads"] == 1  # STARTING's model is the one BENCHING timed


def test_engine_dying_and_engine_refusing_the_model_end_in_teardown_with_evidence(bench_env, docker_client):
    candidate = {
        **bench_env["config"]["candidate"],
        "command": [*DEFAULT_2A_COMMAND, "--die-after-requests", "1"],
        "install_paths": ["2A", "2B"],
        "process": {"command": REFUSING_2B_COMMAND},
    }
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config={"candidate": candidate})
    assert result.returncode == 0, result.stdout[-3000:]
    run_dir, measurements = only_run(bench_env)
    paths = by_path(measurements)
    assert paths["2A"]["status"] == "failed" and "sanity" in paths["2A"]["reason"]
    assert any("illegal memory access" in line for line in paths["2A"]["evidence"]), paths["2A"]
    assert paths["2A"]["teardown"]["verified"]
    assert paths["2B"]["status"] == "unsupported", paths["2B"]
    assert any("are not supported" in line for line in paths["2B"]["evidence"])
    assert [h["to"] for h in measurements["history"]][-2:] == ["TEARDOWN", "DONE"]
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "inconclusive" and verdict["row"] == 3  # one path failed here: not upstream's word
    assert verdict["evidence"]["paths"] == {"2A": "failed", "2B": "unsupported"}
    assert engine_sessions() == [] and bench_containers(docker_client) == []


def test_a_license_outside_the_allowed_list_disallows_every_path(bench_env, docker_client, tiny_model):
    candidate = {
        **bench_env["config"]["candidate"],
        "install_paths": ["2C", "2D"],
        "license": {"model_card": str(tiny_model / "README.md"), "allowed": ["mit"]},
    }
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config={"candidate": candidate})
    assert result.returncode == 0, result.stdout[-3000:]
    run_dir, measurements = only_run(bench_env)
    assert {p["status"] for p in measurements["install_paths"]["paths"]} == {"disallowed_by_vendor"}
    assert measurements["install_paths"]["license"]["license"] == "apache-2.0"
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "keep_chatterbox_voxtral_tts_unsupported_upstream" and verdict["row"] == 2


def test_an_engine_dying_in_warmup_aborts_the_run_instead_of_timing_a_dead_engine(bench_env, docker_client):
    # Without the cloning probe, request 1 is the sanity check and 2 the first warmup: the engine dies there.
    command = [*DEFAULT_2A_COMMAND, "--die-after-requests", "2"]
    candidate = {
        **bench_env["config"]["candidate"],
        "command": command,
        "install_paths": ["2A"],
        "cloning_probe": False,
    }
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config={"candidate": candidate})
    assert result.returncode != 0
    run_dir, measurements = only_run(bench_env)
    assert measurements["final_state"] == "ERROR_ABORTED"
    assert measurements["abort"]["by"] == "engine_failure"
    assert "during BENCHING" in measurements["reason"] and "exit code 71" in measurements["reason"]
    assert any("illegal memory access" in line for line in measurements["abort"]["evidence"]["log_tail"])
    assert [h["to"] for h in measurements["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
    assert measurements["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "inconclusive" and verdict["row"] == 1
