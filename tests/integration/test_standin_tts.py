"""The stand-in TTS server over real HTTP and real engines."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest

from bench_py.audio import OUTPUT_RATE, Pcm, median_f0, rms_dbfs
from bench_py.judge.similarity import speaker_similarity
from bench_py.measure.client import stream_speech

MODEL = "voxbench-candidate"
TEXT = "The weather is lovely today. Shall we walk down to the river?"


def speech(**overrides) -> dict:
    return {"model": MODEL, "input": TEXT, "voice": "en-us+f3", **overrides}


async def fetch(url: str, body: dict, **kwargs):
    async with httpx.AsyncClient() as client:
        return await stream_speech(client, f"{url}/v1/audio/speech", body, **kwargs)


@pytest.fixture
def knobs(candidate_url):
    """Set knobs for one test and restore the defaults after it."""
    defaults = httpx.get(f"{candidate_url}/admin/knobs").json()

    def apply(**changes):
        response = httpx.post(f"{candidate_url}/admin/knobs", json=changes)
        assert response.status_code == 200, response.text

    yield apply
    httpx.post(f"{candidate_url}/admin/knobs", json=defaults)


def test_raw_wav_and_sse_streams_carry_the_same_audio(candidate_url):
    raw = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream=True, stream_format="audio")))
    wav = asyncio.run(
        fetch(
            candidate_url,
            speech(response_format="wav", stream=True, stream_format="audio"),
            response_format="wav",
        )
    )
    sse_pcm = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream_format="sse"), sse=True))
    # stream=true with no stream_format is SSE, as vLLM-Omni answers.
    sse_default = asyncio.run(
        fetch(candidate_url, speech(response_format="wav", stream=True), response_format="wav", sse=True)
    )
    whole = httpx.post(f"{candidate_url}/v1/audio/speech", json=speech(response_format="pcm"))
    assert sse_default.headers["content-type"].startswith("text/event-stream")
    assert wav.headers["content-type"] == "audio/wav"
    for result in (raw, wav, sse_pcm, sse_default):
        assert result.ok, result.error
        assert result.rate == OUTPUT_RATE
        np.testing.assert_array_equal(result.samples, raw.samples)
    np.testing.assert_array_equal(np.frombuffer(whole.content, "<i2"), raw.samples)
    assert 2.0 < raw.audio_s < 8.0
    assert rms_dbfs(raw.samples) > -40  # speech, not silence
    assert median_f0(Pcm(raw.samples, OUTPUT_RATE)) is not None


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": MODEL}, 400, "input"),
        ({"model": MODEL, "input": "  "}, 400, "input"),
        ({"input": "hi"}, 400, "model"),
        ({"model": "someone-else", "input": "hi"}, 404, "model"),
        ({"model": MODEL, "input": "hi", "response_format": "mp3"}, 400, "response_format"),
        ({"model": MODEL, "input": "hi", "response_format": "xyz"}, 400, "response_format"),
        ({"model": MODEL, "input": "hi", "stream_format": "websocket"}, 400, "stream_format"),
        ({"model": MODEL, "input": "hi", "voice": "nobody"}, 400, "voice"),
        ({"model": MODEL, "input": "hi", "speed": 9}, 400, "speed"),
        ({"model": MODEL, "input": "hi", "seed": "x"}, 400, "seed"),
        ({"model": MODEL, "input": "hi", "ref_audio": "data:audio/wav;base64,@@@"}, 400, "ref_audio"),
        (
            {
                "model": MODEL,
                "input": "hi",
                "ref_audio": "data:audio/wav;base64," + base64.b64encode(b"RIFFxx").decode(),
            },
            400,
            "ref_audio",
        ),
    ],
)
def test_bad_requests_get_openai_style_errors(candidate_url, body, status, param):
    response = httpx.post(f"{candidate_url}/v1/audio/speech", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_non_json_body_is_a_400(candidate_url):
    response = httpx.post(f"{candidate_url}/v1/audio/speech", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_voices_health_and_honest_labels(candidate_url):
    voices = httpx.get(f"{candidate_url}/v1/audio/voices").json()["voices"]
    assert "en-us+f3" in voices
    health = httpx.get(f"{candidate_url}/health")
    assert health.json()["standin"] is True and health.json()["engine"] == "espeak-ng"
    assert health.headers["x-voxbench-standin"].startswith("tts-server/openai/espeak-ng")


def test_sixteen_concurrent_streams_interleave(candidate_url, knobs):
    knobs(chunk_interval_ms=25.0)
    text = "One stream among many, each paced like a real engine would pace it."

    async def all_at_once():
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as client:
            body = {"model": MODEL, "input": text, "voice": "en-us+f1", "stream": True, "stream_format": "audio"}
            return await asyncio.gather(
                *[stream_speech(client, f"{candidate_url}/v1/audio/speech", body) for _ in range(16)]
            )

    results = asyncio.run(all_at_once())
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    # Every stream received audio before any stream finished: none waited for another.
    latest_first_audio = max(r.ttfa_ms for r in results)
    earliest_end = min(r.arrivals[-1][0] for r in results)
    assert latest_first_audio < earliest_end
    # And each stream was served in many pieces, interleaved with the others.
    assert min(len(r.arrivals) for r in results) > 10


def test_cloned_condition_is_closer_to_the_reference_than_the_preset(candidate_url, reference_pcm, reference_data_url):
    """Judged by speaker embeddings (resemblyzer), not the pitch/spectrum the stand-in matches."""
    texts = [
        "Could you tell me where the nearest train station is, please?",
        "I have been thinking about what you said yesterday, and I believe you were right.",
    ]
    cloned_scores, preset_scores = [], []
    for text in texts:
        preset = httpx.post(
            f"{candidate_url}/v1/audio/speech", json={"model": MODEL, "input": text, "voice": "en-us"}, timeout=30
        )
        cloned = httpx.post(
            f"{candidate_url}/v1/audio/speech",
            json={"model": MODEL, "input": text, "ref_audio": reference_data_url},
            timeout=30,
        )
        assert "cloned" in cloned.headers["x-voxbench-voice"]
        for response, scores in ((preset, preset_scores), (cloned, cloned_scores)):
            pcm = Pcm(np.frombuffer(response.content, "<i2"), OUTPUT_RATE)
            scores.append(speaker_similarity(reference_pcm, pcm))
    assert np.mean(cloned_scores) > np.mean(preset_scores) + 0.03, (cloned_scores, preset_scores)


def test_first_audio_delay_and_header_first(candidate_url, knobs):
    knobs(first_audio_delay_ms=400.0)
    late = asyncio.run(fetch(candidate_url, speech(stream=True, stream_format="audio")))
    assert late.ttfb_ms >= 400 and late.ttfa_ms >= 400
    knobs(first_audio_delay_ms=400.0, header_first=True)
    early = asyncio.run(
        fetch(
            candidate_url,
            speech(response_format="wav", stream=True, stream_format="audio"),
            response_format="wav",
        )
    )
    # The WAV header left at once; the first audio sample only after the delay.
    assert early.ttfb_ms < 300 <= 400 <= early.ttfa_ms < early.total_ms


def test_leading_silence_chunk_size_stall_and_noise(candidate_url, knobs):
    knobs(leading_silence_ms=500.0, chunk_ms=100.0, stall_after_ms=300.0, stall_ms=600.0)
    body = speech(stream=True, stream_format="sse")

    async def events():
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", f"{candidate_url}/v1/audio/speech", json=body) as response,
        ):
            loop = asyncio.get_running_loop()
            out, buffer = [], b""
            async for chunk in response.aiter_raw():
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    out.append((loop.time(), json.loads(block[6:])))
            return out

    received = asyncio.run(events())
    deltas = [
        (t, np.frombuffer(base64.b64decode(e["audio"]), "<i2"))
        for t, e in received
        if e["type"] == "speech.audio.delta"
    ]
    assert received[-1][1]["type"] == "speech.audio.done"
    sizes = [len(samples) for _, samples in deltas]
    assert set(sizes[:-1]) == {int(OUTPUT_RATE * 0.1)}  # every chunk but the last is 100 ms
    audio = np.concatenate([samples for _, samples in deltas])
    assert not np.any(audio[: int(OUTPUT_RATE * 0.5)])  # 500 ms of digital silence first
    assert np.any(audio[int(OUTPUT_RATE * 0.5) : int(OUTPUT_RATE * 0.8)])
    gaps = np.diff([t for t, _ in deltas])
    assert gaps.max() >= 0.55 and np.sum(gaps >= 0.55) == 1  # one stall of 600 ms

    knobs(noise=True, leading_silence_ms=0.0, stall_ms=0.0)
    noisy = asyncio.run(fetch(candidate_url, speech(stream=True, stream_format="audio")))
    assert noisy.ok and noisy.audio_s > 1.0
    assert median_f0(Pcm(noisy.samples, OUTPUT_RATE)) is None  # no voice in it, only noise


def test_bad_knobs_are_refused(candidate_url):
    for change in ({"first_audio_delay_ms": -1}, {"noise": 3}, {"no_such_knob": 1}):
        assert httpx.post(f"{candidate_url}/admin/knobs", json=change).status_code == 400


def test_chatterbox_face_needs_its_token_and_sends_raw_pcm(incumbent_url, incumbent_token, reference_data_url):
    body = {"text": "Good morning. The kettle is on."}
    assert httpx.post(f"{incumbent_url}/tts", json=body).status_code == 401
    assert httpx.post(f"{incumbent_url}/tts", json=body, headers={"X-Internal-Token": "wrong"}).status_code == 401
    result = asyncio.run(_incumbent(incumbent_url, body, incumbent_token))
    assert result.ok, result.error
    assert result.headers["x-sample-rate"] == str(OUTPUT_RATE)
    assert result.headers["content-type"] == "application/octet-stream"
    assert 1.0 < result.audio_s < 6.0
    assert rms_dbfs(result.samples) > -40
    cloned = httpx.post(
        f"{incumbent_url}/tts",
        json={**body, "audio_prompt": reference_data_url},
        headers={"X-Internal-Token": incumbent_token},
        timeout=30,
    )
    assert cloned.status_code == 200 and "cloned" in cloned.headers["x-voxbench-voice"]
    assert httpx.post(f"{incumbent_url}/v1/audio/speech", json={"model": "x", "input": "y"}).status_code == 404


async def _incumbent(url: str, body: dict, token: str):
    async with httpx.AsyncClient() as client:
        return await stream_speech(client, f"{url}/tts", body, headers={"X-Internal-Token": token})
