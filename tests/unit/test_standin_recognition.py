"""No stand-in passes for the candidate: each install path's ways of naming one are recognised,
however the command line is spelled."""

from __future__ import annotations

import json

import pytest

from bench_py.config.model import load
from bench_py.engines import standin


def candidate(**overrides):
    return load({"gemma_mode": "parallel", "candidate": overrides}).candidate


@pytest.mark.parametrize(
    "command",
    [
        ["flite", "-t", "{text}", "-o", "{out}"],
        ["/usr/bin/espeak-ng", "-w", "{out}", "{text}"],
        ["env", "LANG=C", "nice", "-n", "5", "text2wave", "-o", "{out}"],
        ["sh", "-c", "echo '{text}' | festival --tts"],
        ["bash", "-lc", "cd /tmp && espeak -w {out} '{text}'"],
        ["python3", "-m", "bench_py.standins.batch", "{text}"],
    ],
)
def test_every_spelling_of_a_stand_in_batch_command_is_caught(command):
    assert standin.path_reason("2D", candidate(batch={"command": command}))


@pytest.mark.parametrize(
    "command", [["voxtral-tts", "--text", "{text}", "--out", "{out}"], ["sh", "-c", "voxtral-say '{text}' > {out}"]]
)
def test_a_real_batch_command_is_not_mistaken_for_one(command):
    assert standin.path_reason("2D", candidate(batch={"command": command})) is None


def test_a_tiny_model_in_the_hugging_face_cache_is_caught_without_a_model_path(tmp_path):
    model = "mistralai/Voxtral-4B-TTS-2603"
    snapshot = tmp_path / "hub" / "models--mistralai--Voxtral-4B-TTS-2603" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    config = {"in_process": {"loader": "transformers", "model_path": None}, "hf_cache_dir": str(tmp_path)}
    (snapshot / "config.json").write_text(json.dumps({"model_type": "voxtral_tts"}))
    assert standin.path_reason("2C", candidate(model=model, **config)) is None
    (snapshot / "config.json").write_text(json.dumps({"model_type": "voxtral_tts", standin.MODEL_MARKER: True}))
    assert "tiny stand-in model" in standin.path_reason("2C", candidate(model=model, **config))
