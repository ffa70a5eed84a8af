"""Conformance to vLLM-Omni's own code, per pinned release (0.18.0, the manual run's; 0.30.0, current).

The rules come from the releases' wheels, downloaded from the package index and checked against
their sha256 (never a copy): their ``OpenAICreateSpeechRequest`` says what a request may be,
their sources say what the server answers. Two things are proven against them:

* the candidate stand-in answers as the release does: the same validation, statuses and error
  shapes, ``/health``, ``/version``, ``/v1/audio/voices``, SSE events, the refusal of
  ``ref_audio`` with the open weights, and the release's command line;
* every speech request voxbench sends on the production route (sanity check, cloning probe,
  preset sweep, timed loops, load sweep), captured as the stand-in received it, is one that
  release's own model accepts, and names only fields the model declares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError

from bench_py import documents
from bench_py.config.model import default_config
from bench_py.engines.http import OpenAISpeechTarget
from bench_py.standins import upstream
from tests.helpers import ROOT, bench_containers, free_port, running_command
from tests.integration.test_pipeline import playbook

RELEASES = list(upstream.RELEASES)
MODEL = "mistralai/Voxtral-4B-TTS-2603"
LAUNCH = default_config()["candidate"]["command"]
REQUEST_LINE = "voxbench-standin request "


@pytest.fixture(scope="module")
def sources(upstream_wheels):
    return {version: upstream.Source(wheel) for version, wheel in upstream_wheels.items()}


def shim(version: str, wheels: dict, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The stand-in's `vllm-omni` command line, as the candidate image runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bench_py.standins.vllm_omni_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "VOXBENCH_UPSTREAM": str(wheels[version])},
        cwd=ROOT,
        check=False,
    )


def serving(version: str, wheels: dict, log_dir: Path, *args: str):
    port = free_port()
    argv = [sys.executable, "-m", "bench_py.standins.vllm_omni_cli", "serve", MODEL, "--omni"]
    argv += ["--host", "127.0.0.1", "--port", str(port), *args]
    return running_command(argv, port, log_dir, env={"VOXBENCH_UPSTREAM": str(wheels[version])})


@pytest.fixture(scope="module", params=RELEASES)
def release_server(request, upstream_wheels, tmp_path_factory):
    with serving(request.param, upstream_wheels, tmp_path_factory.mktemp("conformance")) as (url, process):
        yield request.param, url, process


#: Bodies a client might send; whether each is valid is the release's model's to say.
BODIES = [
    {
        "input": "Hello there.",
        "voice": "casual_female",
        "response_format": "pcm",
        "stream": True,
        "stream_format": "audio",
    },
    {
        "input": "Hello there.",
        "voice": "casual_female",
        "response_format": "pcm",
        "stream": True,
        "stream_format": "sse",
    },
    {"input": "Hello there.", "voice": "casual_female", "stream_format": "websocket"},
    {"input": "Hello there.", "voice": "casual_female", "stream": True, "response_format": "mp3"},
    {"input": "Hello there.", "voice": "casual_female", "response_format": "pcm", "stream": True, "speed": 1.5},
    {"voice": "casual_female", "response_format": "pcm"},
    {"input": "Hello there.", "voice": "casual_female", "speed": 9},
    {"input": "Hello there.", "voice": "casual_female", "response_format": "aac"},
    {"input": "Hello there.", "voice": "casual_female", "max_new_tokens": 0},
    # A misspelled key is ignored by the model, as by the real server: the request is simply not streamed.
    {"input": "Hello there.", "voice": "casual_female", "response_format": "pcm", "stream_fromat": "audio"},
]


def test_the_standin_validates_every_body_with_the_releases_own_model(release_server, sources):
    version, url, _ = release_server
    model = upstream.speech_request_model(sources[version])
    for body in BODIES:
        try:
            model.model_validate(body)
            upstream_ok = True
        except ValidationError:
            upstream_ok = False
        response = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=30)
        if upstream_ok:
            assert response.status_code in (200, 400), (body, response.text)
            if response.status_code == 400:  # a handler's rule after validation, never the model's
                assert response.json()["error"]["type"] == "BadRequestError", (body, response.text)
        else:
            assert response.status_code == 400, (version, body)
            error = response.json()["error"]
            assert error["type"] == "Bad Request" and error["code"] == 400, error
            if version == "0.18.0":
                assert error["param"] is None
            else:
                assert error["param"].startswith("body"), error


def test_what_the_release_answers_around_speech(release_server, sources):
    version, url, _ = release_server
    release, texts = upstream.release(version), upstream.voxtral_texts(sources[version])
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert (health.json() == {"status": "healthy"}) if release.health_json else (health.content == b"")
    assert httpx.get(f"{url}/version").json() == {"version": f"{release.minor}.0"}  # vLLM's, not vLLM-Omni's
    voices = httpx.get(f"{url}/v1/audio/voices").json()
    assert set(voices) == {"voices", "uploaded_voices"} and voices["voices"] == sorted(voices["voices"])
    assert ("default" in voices["voices"]) is release.voices_list_default
    wrong_model = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "voice": "casual_male", "model": "x"})
    assert wrong_model.status_code == 404
    assert wrong_model.json()["error"] == {
        "message": "The model `x` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
    no_voice = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi"})
    assert no_voice.status_code == 400 and no_voice.json()["error"]["message"] == texts.missing_voice
    unknown = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "voice": "Samantha"})
    assert unknown.json()["error"]["message"].startswith("Invalid speaker 'samantha'. Supported: ar_male, ")
    if release.voices_list_default:  # listed, and refused like no voice at all
        listed = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "voice": "default"})
        assert listed.status_code == 400 and listed.json()["error"]["message"] == texts.missing_voice
        rate = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "voice": "casual_male", "sample_rate": 24000})
        assert rate.status_code == 400 and "sample_rate is not supported" in rate.json()["error"]["message"]
    plain_stream = {"input": "Good morning.", "voice": "casual_male", "response_format": "pcm", "stream": True}
    answered = httpx.post(f"{url}/v1/audio/speech", json=plain_stream, timeout=30)
    kind = answered.headers["content-type"].split(";")[0]
    assert kind == ("text/event-stream" if release.stream_defaults_to_sse else "audio/pcm")
    # Voxtral's output carries no rate, which a WAV stream needs: the 200 goes out, the body aborts.
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{url}/v1/audio/speech", json={**plain_stream, "response_format": "wav", "stream_format": "audio"})


def test_sse_events_carry_the_releases_own_keys(upstream_wheels, sources, tmp_path):
    """0.30 streams SSE (0.18 refuses it: the validation test above)."""
    version = "0.30.0"
    keys = upstream.sse_event_keys(sources[version])
    usage_model = upstream._request_module(str(sources[version].location), version).SpeechTokenUsage
    body = {"input": "Good morning.", "voice": "casual_male", "response_format": "pcm", "stream_format": "sse"}
    with serving(version, upstream_wheels, tmp_path) as (url, _):
        text = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=30).text
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("event: speech.audio.") and "\ndata: {" in b for b in blocks)  # an event line each
    events = [json.loads(b.split("\ndata: ", 1)[1]) for b in blocks]
    deltas, done = events[:-1], events[-1]
    assert deltas and all(set(e) == keys["speech.audio.delta"] for e in deltas)
    assert done["type"] == "speech.audio.done" and set(done) == keys["speech.audio.done"] | {"usage"}
    usage_model.model_validate(done["usage"])


def test_ref_audio_with_the_open_weights_ends_as_each_release_ends_it(upstream_wheels, sources, tmp_path):
    clip = "data:audio/wav;base64,UklGRg=="
    body = {"input": "Hello, this is a cloning probe.", "ref_audio": clip}
    with serving("0.30.0", upstream_wheels, tmp_path) as (url, process):  # refused before generating
        refused = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=30)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == upstream.voxtral_texts(sources["0.30.0"]).clone_refusal
        time.sleep(0.5)
        assert process.poll() is None and httpx.get(f"{url}/health").status_code == 200  # it keeps serving
    with serving("0.18.0", upstream_wheels, tmp_path) as (url, process):  # reaches the engine, which dies
        failed = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=30)
        assert failed.status_code == 400 and failed.json()["error"]["message"].startswith("Speech generation failed")
        assert upstream.voxtral_texts(sources["0.18.0"]).encoder_error in failed.json()["error"]["message"]
        process.wait(timeout=10)
        assert process.returncode != 0
    with serving("0.18.0", upstream_wheels, tmp_path) as (url, process):  # streamed: the 200 is out first
        with httpx.stream("POST", f"{url}/v1/audio/speech", json={**body, "stream": True}, timeout=30) as cut:
            assert cut.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                b"".join(cut.iter_bytes())
        process.wait(timeout=10)
        assert process.returncode != 0


def test_the_releases_command_lines(upstream_wheels, tmp_path):
    for version in RELEASES:
        assert shim(version, upstream_wheels, "--omni", "--version").stdout.strip() == version
        assert shim(version, upstream_wheels, "--version").stdout.strip() == f"{version[:4]}.0"  # vLLM's
    refused = shim("0.30.0", upstream_wheels, "serve", MODEL, "--omni", "--stage-configs-path", "x.yaml")
    assert refused.returncode == 2 and "unrecognized arguments: --stage-configs-path x.yaml" in refused.stderr
    refused = shim("0.18.0", upstream_wheels, "serve", MODEL, "--omni", "--stage-overrides", "{}")
    assert refused.returncode == 2 and "unrecognized arguments: --stage-overrides {}" in refused.stderr
    plain = shim("0.30.0", upstream_wheels, "serve", MODEL, "--port", str(free_port()))  # no --omni
    assert plain.returncode != 0 and "are not supported" in plain.stdout + plain.stderr
    # What each stage loads follows the release's merge rule.
    patched = yaml.safe_load(upstream.stage_config_text(upstream.Source(upstream_wheels["0.18.0"])))
    for stage, share in zip(patched["stage_args"], (0.2, 0.025), strict=True):
        stage["engine_args"]["gpu_memory_utilization"] = share
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump(patched))
    cases = [
        (
            "0.18.0",
            ["--stage-configs-path", str(tmp_path / "stage.yaml"), "--gpu-memory-utilization", "0.9"],
            (0.2, 0.025),
        ),
        ("0.30.0", ["--gpu-memory-utilization", "0.3"], (0.3, 0.3)),
        (
            "0.30.0",
            ["--stage-overrides", '{"0":{"gpu_memory_utilization":0.2},"1":{"gpu_memory_utilization":0.025}}'],
            (0.2, 0.025),
        ),
    ]
    for version, flags, (first, second) in cases:
        with serving(version, upstream_wheels, tmp_path, *flags):
            pass
        log = max(tmp_path.glob("vllm_omni_cli-*.log"), key=lambda p: p.stat().st_mtime).read_text()
        assert f"stage 0 gpu_memory_utilization={first:g}, stage 1 gpu_memory_utilization={second:g}" in log, log


def test_a_renamed_field_is_caught_though_the_model_ignores_it(sources):
    """Validation alone proves nothing of a misspelled key (the model ignores unknown keys): the
    declared-key check is what fails."""
    body = (
        OpenAISpeechTarget("http://x/v1/audio/speech", MODEL, "casual_female", "ref.wav").request("Hi.", "preset").body
    )
    renamed = {("stream_fromat" if k == "stream_format" else k): v for k, v in body.items()}
    for version in RELEASES:
        model = upstream.speech_request_model(sources[version])
        model.model_validate(renamed)  # accepted ...
        assert set(body) <= upstream.declared_keys(model)
        assert set(renamed) - upstream.declared_keys(model) == {"stream_fromat"}  # ... and caught here


def captured_requests(run_dir: Path) -> list[dict]:
    (log,) = (run_dir / "logs").glob("*-candidate.log")
    return [json.loads(line.split(REQUEST_LINE, 1)[1]) for line in log.read_text().splitlines() if REQUEST_LINE in line]


@pytest.mark.docker
@pytest.mark.parametrize("version", RELEASES)
def test_every_request_voxbench_sends_is_one_the_release_accepts(bench_env, docker_client, sources, version):
    """The production route against each release: 2A from the candidate image with vLLM-Omni's own
    launch command (0.18 also logs the GB10 NVRTC kernel error); the open weights cannot clone, so
    the cloning probe (refused on 0.30, the engine dying on 0.18), the preset sweep over every voice
    the engine lists and its substitute; the timed loops and a small load sweep."""
    candidate = {
        **bench_env["config"]["candidate"],
        "image": f"voxbench/standin-vllm-omni:{version}",
        "command": [*LAUNCH, *(["--nvrtc-error"] if version == "0.18.0" else [])],
        "install_paths": ["2A"],
    }
    load = {"enabled": True, "concurrency_limit": 2, "requests_per_level": 2, "poisson_rate_per_s": 0}
    config = {"candidate": candidate, "bench": {**bench_env["config"]["bench"], "load": load}}
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    assert result.returncode == 0, result.stdout[-3000:]
    (run_dir,) = (bench_env["tmp"] / "runs").iterdir()
    m = documents.read("measurements", run_dir / "measurements.json")
    (path,) = m["install_paths"]["paths"]
    assert path["status"] == "ok" and path["launch"]["engine_version"] == version

    model = upstream.speech_request_model(sources[version])
    declared = upstream.declared_keys(model)
    requests = [r["body"] for r in captured_requests(run_dir) if r["path"] == "/v1/audio/speech"]
    kinds = {"sanity": 0, "probe": 0, "sweep": 0, "stream": 0}
    for body in requests:
        model.model_validate(body)  # the release's own model accepts it ...
        assert set(body) <= declared, set(body) - declared  # ... and every key is one it reads
        assert body.get("stream_format") != "sse" or version != "0.18.0"
        if "ref_audio" in body:
            kinds["probe"] += 1
        elif body["input"].startswith("This is a short sanity check"):
            kinds["sanity"] += 1
        elif not body.get("stream"):
            kinds["sweep"] += 1
        else:
            kinds["stream"] += 1
    timed = len([r for r in m["bench"]["records"]["candidate"]])
    assert kinds["probe"] == 1 and kinds["sanity"] == 1 and kinds["sweep"] == 20
    assert kinds["stream"] >= timed + 4  # the timed loops (warmups included) and the load sweep
    assert m["bench"]["load"]["sweep"]["levels"]

    probe, sweep = path["cloning_probe"], path["preset_sweep"]
    assert path["cloning"] == "preset_substitute" and probe["supported"] is False and probe["status"] == 400
    if version == "0.30.0":
        assert probe["outcome"] == "answered HTTP 400; the engine kept serving" and "restarted" not in probe
        assert probe["error"] == upstream.voxtral_texts(sources[version]).clone_refusal
    else:
        assert probe["outcome"] == "answered HTTP 400; the engine exited" and probe["restarted"] is True
        assert any("encode_waveforms requires encoder weights" in line for line in probe["evidence"])
        kernel = m["teardown"]["kernel_errors"]  # and the GB10 kernel error is diagnosed
        assert kernel["file"] == "voxtral_nvrtc_diagnostic.log" and kernel["errors"] >= 1
        assert "RuntimeError: nvrtc: error" in (run_dir / kernel["file"]).read_text()
    assert len(sweep["scores"]) == 20 and "default" not in sweep["scores"]
    assert sweep["chosen"] == max(sweep["scores"], key=lambda v: sweep["scores"][v]) == path["substitute_voice"]
    assert all((run_dir / "preset-sweep" / f"{voice}.wav").is_file() for voice in sweep["scores"])
    cloned = [r for r in m["bench"]["records"]["candidate"] if r["condition"] == "cloned" and not r["warmup"]]
    assert cloned and all(r["ok"] for r in cloned)  # the substitute spoke; the engine did not crash again
    verdict = documents.read("verdict", run_dir / "verdict.json")
    assert (verdict["verdict"], verdict["row"], verdict["reason"]) == ("keep_chatterbox", 5, "cloning_unsupported")
    assert bench_containers(docker_client) == []
