"""Install-path logic that needs no engine: the sanity gate, log classification, the license
gate, the GPU request, the configured order."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bench_py.audio import Pcm, decode_wav
from bench_py.config.model import ConfigError, load
from bench_py.engines import paths, sanity
from bench_py.engines.container import ContainerSpec

SENTENCE = "This is a short sanity check of the candidate's voice."


def speech(engine: str) -> Pcm:
    argv = ["espeak-ng", "--stdout", SENTENCE]
    if engine == "flite":
        argv = ["flite", "-t", SENTENCE, "-o", "/dev/stdout"]
    return decode_wav(subprocess.run(argv, capture_output=True, check=True).stdout)


@pytest.mark.parametrize("engine", ["espeak-ng", "flite"])
def test_real_speech_passes_the_sanity_check(engine):
    result = sanity.check(speech(engine))
    assert result["ok"], result
    assert result["spectral_flatness"] < sanity.MAX_FLATNESS / 5  # far from the threshold


def test_white_noise_silence_and_clipping_fail_with_their_reason():
    rng = np.random.default_rng(0)
    noise = sanity.check(Pcm((rng.standard_normal(48000) * 3000).astype(np.int16), 24000))
    assert not noise["ok"] and noise["reason"].startswith("noise-like audio") and noise["spectral_flatness"] > 0.5
    silent = sanity.check(Pcm(np.zeros(48000, np.int16), 24000))
    assert not silent["ok"] and silent["reason"] == "silent or empty audio"
    loud = speech("espeak-ng")
    clipped = Pcm(np.clip(loud.samples.astype(np.int32) * 40, -32768, 32767).astype(np.int16), loud.rate)
    result = sanity.check(clipped)
    assert not result["ok"] and result["reason"].startswith("clipped audio")


def test_log_lines_separate_unsupported_upstream_from_this_host():
    unsupported = ["ValueError: Model architectures ['VoxtralTTSForConditionalGeneration'] are not supported for now."]
    assert paths.classify_log(unsupported) == "unsupported"
    assert paths.classify_log(["OSError: [Errno 98] Address already in use"]) == "blocked"
    assert paths.classify_log(["RuntimeError: CUDA error: out of memory"]) == "failed"
    assert paths.interesting(["loading", "Traceback (most recent call last):", "done"]) == [
        "Traceback (most recent call last):"
    ]


def test_license_is_read_from_the_model_card_and_checked(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: cc-by-nc-4.0\nlibrary_name: vllm\n---\n# Voxtral\n")
    assert paths.read_license(card) == "cc-by-nc-4.0"
    (tmp_path / "config.json").write_text('{"license": "apache-2.0"}')
    assert paths.read_license(tmp_path / "config.json") == "apache-2.0"
    config = load(
        {"gemma_mode": "parallel", "candidate": {"license": {"model_card": str(card), "allowed": ["Apache-2.0"]}}}
    )
    verdict = paths.license_verdict(config.candidate)
    assert verdict == {**verdict, "allowed": False, "license": "cc-by-nc-4.0"}
    assert "cc-by-nc-4.0 is not in candidate.license.allowed" in verdict["reason"]
    assert paths.license_verdict(load({"gemma_mode": "parallel"}).candidate) is None  # no gate configured


def test_the_gpu_is_requested_as_docker_run_gpus_all(tmp_path):
    token = tmp_path / "t"
    token.write_text("x")
    run_id = "BENCHMARK-VOXTRAL-H-20260101-000000"
    spec = ContainerSpec(run_id, "img", ["serve"], 8091, 18091, token, "/run/t", gpus=True)
    (request,) = spec.create_kwargs()["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]] and request["Driver"] == ""
    without = ContainerSpec(run_id, "img", ["serve"], 8091, 18091, token, "/run/t")
    assert "device_requests" not in without.create_kwargs()


def test_install_path_order_is_validated():
    # Production's order: 2D is left out, vLLM-Omni has no one-utterance command.
    assert load({"gemma_mode": "parallel"}).candidate.install_paths == ["2A", "2B", "2C"]
    with pytest.raises(ConfigError, match=r"candidate\.install_paths"):
        load({"gemma_mode": "parallel", "candidate": {"install_paths": ["2A", "2A"]}})
    with pytest.raises(ConfigError, match=r"candidate\.install_paths"):
        load({"gemma_mode": "parallel", "candidate": {"install_paths": ["2E"]}})


def test_the_reported_version_picks_the_longest_matching_flags():
    from bench_py.engines import launch

    table = {"0.18": ["--stage-configs-path", "{stage_config}"], "0.16": ["--stage-config", "{stage_config}"]}
    assert launch.flags_for("0.16.2", table) == ("0.16", ["--stage-config", "{stage_config}"])
    assert launch.flags_for("0.18.0rc1", {**table, "0.18.0": ["--new"]})[0] == "0.18.0"
    with pytest.raises(launch.LaunchError, match=r"reports version 0\.20\.1.*0\.16, 0\.18 only"):
        launch.flags_for("0.20.1", table)
    with pytest.raises(launch.LaunchError):
        launch.flags_for("0.160.1", {"0.16": []})  # a prefix means a whole version component


def test_env_file_mode_passes_the_token_as_docker_run_env_file_would(tmp_path):
    token, env_file = tmp_path / "t", tmp_path / "hf.env"
    token.write_text("hf_SECRET")
    env_file.write_text("HF_TOKEN=hf_SECRET\n")
    run_id = "BENCHMARK-VOXTRAL-H-20260101-000000"
    kwargs = ContainerSpec(run_id, "img", ["serve"], 8091, 18091, token, "/run/t", env_file=env_file).create_kwargs()
    assert kwargs["environment"] == {"HF_TOKEN": "hf_SECRET"} and "volumes" not in kwargs
    config = load({"gemma_mode": "parallel", "candidate": {"token_mode": "env-file"}})
    from bench_py.run.preflight import check_token_mode

    check = check_token_mode(config)
    assert check.ok and check.warning and "docker inspect shows it" in check.message


def test_the_hf_cache_is_mounted_beside_the_read_only_token(tmp_path):
    token = tmp_path / "t"
    token.write_text("x")
    cache = tmp_path / "hf-cache"
    spec = ContainerSpec(
        "BENCHMARK-VOXTRAL-H-20260101-000000", "img", ["serve"], 8091, 18091, token, "/run/t",
        hf_cache=(str(cache), "/root/.cache/huggingface"),
    )  # fmt: skip
    assert spec.create_kwargs()["volumes"] == {
        str(token.resolve()): {"bind": "/run/t", "mode": "ro"},
        str(cache.resolve()): {"bind": "/root/.cache/huggingface", "mode": "rw"},
    }
