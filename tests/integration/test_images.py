"""Stand-in images built offline from Debian packages; containers from them answer."""

from __future__ import annotations

import contextlib
import sys

import docker.errors
import httpx
import pytest

from bench_py.standins.images import BASE_REPOSITORY, LABEL_INPUTS, BaseRecipe, build_standins
from tests.helpers import free_port, wait_healthy

pytestmark = pytest.mark.docker


def test_images_are_cached_by_their_inputs(docker_client, standin_images):
    lines: list[str] = []
    again = build_standins(docker_client, progress=lines.append)
    assert again == standin_images  # same inputs, same tags, nothing rebuilt
    assert all("up to date" in line for line in lines), lines
    base = docker_client.images.get(BaseRecipe().tag)
    assert base.labels[LABEL_INPUTS] == BaseRecipe().digest()
    assert BaseRecipe(packages=(*BaseRecipe().packages, "sox")).tag != BaseRecipe().tag
    assert BaseRecipe().tag.startswith(BASE_REPOSITORY)


def test_containers_from_the_images_answer(docker_client, standin_images, test_run_label):
    tts_port, cotenant_port = free_port(), free_port()
    started = []
    # The candidate image answers to vLLM-Omni's own launch command (its CMD); the TTS image is panda's API.
    for role, port, container_port in (("vllm-omni-0.30.0", tts_port, 8091), ("cotenant", cotenant_port, 8000)):
        started.append(
            docker_client.containers.run(
                standin_images[role],
                detach=True,
                labels={test_run_label: "images"},
                ports={f"{container_port}/tcp": ("127.0.0.1", port)},
            )
        )
    try:
        wait_healthy(f"http://127.0.0.1:{tts_port}/health", timeout_s=60)
        wait_healthy(f"http://127.0.0.1:{cotenant_port}/health", timeout_s=30)
        speech = httpx.post(
            f"http://127.0.0.1:{tts_port}/v1/audio/speech",
            timeout=30,
            json={
                "model": "mistralai/Voxtral-4B-TTS-2603",
                "input": "Hello from inside a container.",
                "voice": "casual_female",
                "response_format": "wav",
            },
        )
        assert speech.status_code == 200
        assert speech.content[:4] == b"RIFF" and len(speech.content) > 24_000
        chat = httpx.post(
            f"http://127.0.0.1:{cotenant_port}/v1/chat/completions",
            timeout=30,
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 200 and float(chat.headers["x-server-processing-ms"]) > 0
    finally:
        for container in started:
            container.remove(force=True)


def test_a_paired_image_is_built_for_this_platform_only_when_the_minors_match(docker_client, standin_images, tmp_path):
    """The fix for an engine image of another architecture: this host's vllm-openai base plus the
    vLLM-Omni wheel of the matching tag, from local parts only (wheels built here)."""
    import subprocess

    from bench_py.engines.paired import build_with_wheel
    from bench_py.engines.paths import host_platform
    from bench_py.standins.wheels import make_wheel

    base, paired = "voxbench-test/vllm-openai:0.18.2", "voxbench-test/vllm-omni:0.18-paired"
    try:
        build_with_wheel(docker_client, standin_images["tts"], make_wheel(tmp_path, "vllm", "0.18.2"), base)
        voxbench = [sys.executable, "-m", "bench_py.cli", "images", "pair", "--base", base, "--tag"]
        good = subprocess.run(
            [*voxbench, paired, "--wheel", str(make_wheel(tmp_path, "vllm-omni", "0.18.0"))],
            capture_output=True,
            text=True,
        )
        assert good.returncode == 0, good.stderr
        assert good.stdout.split("\t")[:2] == [paired, host_platform().split("/")[1]]
        assert "vllm 0.18.2, vllm-omni 0.18.0" in good.stdout
        bad = subprocess.run(
            [*voxbench, "voxbench-test/vllm-omni:bad", "--wheel", str(make_wheel(tmp_path, "vllm-omni", "0.17.1"))],
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 1
        assert "vLLM 0.18.2 and vLLM-Omni 0.17.1 differ in their minor version" in bad.stderr
        assert not docker_client.images.list("voxbench-test/vllm-omni:bad")  # refused before building
    finally:
        for tag in (paired, base):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(tag, force=True)
