"""Failure injection on single install paths (real Docker, real tmux, real engines): each ends
with a status and a clear reason, and its teardown leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess

import pytest

from bench_py.config import embedded_overrides
from bench_py.config.model import deep_merge, default_config, load
from bench_py.engines import paths
from bench_py.processes import pid_alive
from tests.helpers import bench_containers, free_port

pytestmark = pytest.mark.docker

RUN_ID = "BENCHMARK-VOXTRAL-TESTHOST-20261126-000000"
#: vLLM-Omni's own launch line, as the candidate images answer it.
LAUNCH = default_config()["candidate"]["command"]


@pytest.fixture
def context(tmp_path, standin_images):
    token = tmp_path / "hf_token"
    token.write_text("hf_PATH_FAILURE_CANARY\n")
    token.chmod(0o600)

    def make(**candidate) -> paths.Context:
        # The embedded default's stand-ins (inventory/local), allowed as there.
        overrides = deep_merge(embedded_overrides(), {"candidate": {"port": free_port(), "ready_timeout_s": 20}})
        config = load({"gemma_mode": "parallel", **deep_merge(overrides, {"candidate": candidate})})
        return paths.Context(RUN_ID, config.candidate, token, tmp_path, allow_standins=True)

    yield make
    for name in sessions():  # a failed assertion must not leave an engine for the next test
        paths.stop_session(name, None, 1)


def sessions() -> list[str]:
    listed = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True)
    return [name for name in listed.stdout.split() if name.startswith("voxbench-benchmark-")]


def test_a_missing_image_is_blocked_before_anything_starts(context, docker_client):
    path = paths.make("2A", context(image="voxbench/not-built-here:0.0"))
    with pytest.raises(paths.PathError) as raised:
        path.start()
    assert raised.value.status == "blocked"
    # Air-gapped, the registry cannot even be asked; connected, it says it has no such image.
    assert "voxbench/not-built-here:0.0 is not on this host" in raised.value.reason.replace("neither", "not")
    assert path.stop()["verified"] and bench_containers(docker_client) == []


def test_a_readiness_timeout_fails_the_container_path_and_removes_it(context, docker_client):
    command = [*LAUNCH, "--startup-delay-ms", "60000"]  # loading: the port accepts nothing yet
    path = paths.make("2A", context(command=command, ready_timeout_s=3))
    with pytest.raises(paths.PathError) as raised:
        path.start()
    assert raised.value.status == "failed"
    assert "did not answer" in raised.value.reason and "within 3 s" in raised.value.reason
    assert bench_containers(docker_client)  # still there until teardown ...
    assert path.stop()["verified"] and bench_containers(docker_client) == []  # ... which removes it


def test_a_taken_port_blocks_the_process_path_and_its_session_is_gone(context):
    ctx = context()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ctx.candidate.port))
        holder.listen()
        path = paths.make("2B", ctx)
        with pytest.raises(paths.PathError) as raised:
            path.start()
    assert raised.value.status == "blocked", raised.value.reason
    assert any("address already in use" in line.lower() for line in raised.value.evidence), raised.value.reason
    stopped = path.stop()
    assert stopped["verified"] and sessions() == []


def test_a_missing_batch_binary_is_blocked(context):
    path = paths.make("2D", context(batch={"command": ["no-such-synthesizer", "{text_file}"], "voice": "x"}))
    with pytest.raises(paths.PathError) as raised:
        path.start()
    assert raised.value.status == "blocked" and "no-such-synthesizer is not installed" in raised.value.reason


def test_the_process_path_stops_an_engine_that_ignores_sigterm(context, tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ignoring SIGTERM', flush=True)\n"
        "time.sleep(600)\n"
    )
    ctx = context(process={"command": ["{python}", str(script)], "stop_grace_s": 1}, ready_timeout_s=2)
    path = paths.make("2B", ctx)
    with pytest.raises(paths.PathError) as raised:
        path.start()
    assert raised.value.status == "failed" and "within 2 s" in raised.value.reason
    stopped = path.stop()
    assert stopped["signals"] == ["SIGTERM", "SIGKILL"] and stopped["verified"]
    assert not pid_alive(stopped["pid"]) and sessions() == []


@pytest.mark.parametrize(("release", "flag"), [("0.18.0", "--stage-configs-path"), ("0.30.0", "--stage-overrides")])
def test_the_engines_own_version_picks_the_flags_and_the_budget_reaches_every_stage(
    context, docker_client, release, flag
):
    ctx = context(image=f"voxbench/standin-vllm-omni:{release}")
    path = paths.make("2A", ctx)
    try:
        facts = path.start()
        log = docker_client.containers.get(facts["container"]["id"]).logs().decode()
    finally:
        stopped = path.stop()
    planned = facts["launch"]
    assert planned["engine_version"] == release and planned["flags_for"] == release[:4]
    command = facts["container"]["command"]
    assert command[command.index(flag) + 1]  # the flag, with its planned value
    assert ("--tokenizer-mode" in command) is (release == "0.18.0")  # 0.18's line, as the manual run had it
    assert len(planned["stage_utilizations"]) == 2  # Voxtral's two stages, from the engine's own config
    assert planned["readback"] == {"engine_version": release, "stage_utilizations": planned["stage_utilizations"]}
    assert facts["vllm_version"].startswith(release[:4]) and planned["pairing"] is None
    loaded = ", ".join(f"stage {i} gpu_memory_utilization={u:g}" for i, u in enumerate(planned["stage_utilizations"]))
    assert loaded in log  # what the engine loaded, by its release's merge rule
    assert facts["preset_voice"]["name"] == "ar_male" and "default" not in facts["voices"]
    assert stopped["verified"] and bench_containers(docker_client) == []  # the probes are gone too


def test_a_flag_set_meant_for_another_version_is_refused_by_the_engine(context, docker_client):
    command = [*LAUNCH, "--stage-configs-path", "/dev/null"]  # 0.18's flag, given to 0.30
    path = paths.make("2A", context(command=command, launch={"version_command": None}))
    with pytest.raises(paths.PathError) as raised:
        path.start()
    assert raised.value.status == "failed"
    assert any("unrecognized arguments: --stage-configs-path" in line for line in raised.value.evidence)
    assert path.stop()["verified"] and bench_containers(docker_client) == []


def test_a_version_with_no_configured_flags_is_blocked_before_the_engine_starts(context, docker_client):
    # An engine reporting a release no flags are configured for (here the image is asked to say 0.31.0).
    path = paths.make("2A", context(launch={"version_command": ["sh", "-c", "echo 0.31.0"]}))
    with pytest.raises(paths.PathError) as raised:
        path.start()
    assert raised.value.status == "blocked" and "reports version 0.31.0" in raised.value.reason
    assert "has flags for 0.18, 0.30 only" in raised.value.reason
    assert path.stop()["verified"] and bench_containers(docker_client) == []


def test_env_file_mode_is_the_documented_exception_the_token_shows_in_inspect(context, docker_client, tmp_path):
    """The one place a token may appear, excluded from every canary test by this name: the seed's
    env-file mode. It leaks into docker inspect (asserted, so the docs stay true) and its file is
    deleted once the container has started."""
    path = paths.make("2A", context(token_mode="env-file", launch={"version_command": None}))
    try:
        facts = path.start()
        inspect = docker_client.containers.get(facts["container"]["id"]).attrs
    finally:
        assert path.stop()["verified"]
    assert "HF_TOKEN=hf_PATH_FAILURE_CANARY" in inspect["Config"]["Env"]  # the documented leak
    assert not any(m["Destination"] == "/run/secrets/hf_token" for m in inspect["Mounts"])
    assert facts["token"].startswith("env-file") and not (tmp_path / ".hf_token.env").exists()
