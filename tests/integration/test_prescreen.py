"""The optional hosted-API prescreen against a local server speaking Mistral's hosted protocol
(the stand-in's mistral-hosted face: Bearer key, base64 ref_audio, SSE float32 audio_data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import ROOT, running_server

BIN = Path(sys.executable).parent
KEY = "mistral-CANARY-7c1e"


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hosted")
    key_file = folder / "mistral_api_key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    with running_server(
        "bench_py.standins.tts_server", "--api", "mistral-hosted", "--engine", "espeak-ng",
        "--model", "voxtral-mini-tts-2603", "--token-file", str(key_file), log_dir=folder,
    ) as url:  # fmt: skip
        yield {"url": f"{url}/v1/audio/speech", "key_file": key_file, "dir": folder}


def _config(hosted, tmp_path, reference_path, threshold: float, key_file=None) -> Path:
    from bench_py.voice.references import add_confirmed

    references = tmp_path / "voice-references"
    add_confirmed(references, "default", reference_path, "tests")
    config = {
        "reference": {"dir": str(references)},
        "prescreen": {"url": hosted["url"], "key_file": str(key_file or hosted["key_file"]),
                      "similarity_threshold": threshold},
    }  # fmt: skip
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def prescreen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "voxbench"), "prescreen", *args], capture_output=True, text=True, timeout=180)


def test_the_protocol_streams_float32_audio_data_events(hosted, reference_path):
    import base64

    body = {"model": "voxtral-mini-tts-2603", "input": "Hello there.", "response_format": "pcm", "stream": True,
            "ref_audio": base64.b64encode(reference_path.read_bytes()).decode()}  # fmt: skip
    assert httpx.post(hosted["url"], json=body).status_code == 401  # no key
    response = httpx.post(hosted["url"], json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block.strip()]
    assert events[0].startswith("event: speech.audio.delta\ndata: ")
    assert events[-1].startswith("event: speech.audio.done\ndata: ")
    first = base64.b64decode(json.loads(events[0].split("data: ", 1)[1])["audio_data"])
    assert len(first) % 4 == 0  # float32 samples


def test_a_passing_prescreen_says_it_proves_nothing_about_the_open_weights(hosted, tmp_path, reference_path):
    config = _config(hosted, tmp_path, reference_path, threshold=-1.0)
    estimate = prescreen("--config", str(config), "--estimate")
    assert estimate.returncode == 0 and "estimated" in estimate.stdout and "USD" in estimate.stdout
    assert not list(tmp_path.glob("prescreen-*.json"))  # an estimate sends and records nothing
    result = prescreen("--config", str(config), "--yes", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("estimated") < result.stdout.index("similarities")  # the cost came first
    assert "the open weights under test cannot" in result.stdout
    (record_path,) = tmp_path.glob("prescreen-*.json")
    record = json.loads(record_path.read_text())
    assert record["sent"] and record["recommendation"] == "continue" and len(record["similarities"]) == 3
    assert all(-1.0 <= s <= 1.0 for s in record["similarities"])
    assert KEY not in record_path.read_text() and KEY not in result.stdout + result.stderr


def test_a_failing_prescreen_recommends_aborting_and_records_the_answer(hosted, tmp_path, reference_path):
    config = _config(hosted, tmp_path, reference_path, threshold=1.0)  # nothing can reach 1.0
    result = prescreen("--config", str(config), "--yes", "--answer", "abort", "--out", str(tmp_path), "--json")
    assert result.returncode == 4, result.stderr
    record = json.loads(result.stdout)
    assert (record["recommendation"], record["answer"], record["proceed"]) == ("abort", "abort", False)
    asked = subprocess.run(
        [str(BIN / "voxbench"), "prescreen", "--config", str(config), "--out", str(tmp_path)],
        input="n\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        asked.returncode == 0
        and "declined" in json.loads(sorted(tmp_path.glob("prescreen-*.json"))[-1].read_text())["answer"]
    )


def test_a_wrong_key_is_a_clear_error(hosted, tmp_path, reference_path):
    wrong = tmp_path / "wrong_key"
    wrong.write_text("not-the-key")
    config = _config(hosted, tmp_path, reference_path, threshold=0.5, key_file=wrong)
    result = prescreen("--config", str(config), "--yes", "--out", str(tmp_path))
    assert result.returncode == 1 and "did not return audio" in result.stderr and "401" in result.stderr


def test_bench_yml_stops_before_any_host_work_when_the_prescreen_says_so(hosted, tmp_path, reference_path):
    config = yaml.safe_load(_config(hosted, tmp_path, reference_path, threshold=1.0).read_text())
    config["paths"] = {"state_dir": str(tmp_path / "state")}
    variables = {"voxbench_config": config, "voxbench_prescreen_dest": str(tmp_path)}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "bench.yml", "-e", f"@{tmp_path / 'vars.json'}", "-e", "gemma_mode=parallel",
         "-e", "allow_api_prescreen=true"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "estimated" in result.stdout and "the prescreen recommends aborting" in result.stdout
    assert "Launch" not in result.stdout.split("PLAY RECAP")[0].split("prescreen recommends aborting")[1]
    assert not (tmp_path / "state").exists()  # no run was created on the host
    assert KEY not in result.stdout
