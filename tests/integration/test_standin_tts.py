"""The stand-in TTS server over real HTTP and real engines."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest

from bench_py.audio import OUTPUT_RATE, Pcm, decode_wav, median_f0, rms_dbfs
from bench_py.judge.similarity import speaker_similarity
from bench_py.measure.client import stream_speech

MODEL = "voxbench-candidate"
TEXT = "The weather is lovely today. Shall we walk down to the river?"


def speech(**overrides) -> dict:
    return {"model": MODEL, "input": TEXT, "voice": "casual_female", **overrides}


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


def test_raw_sse_and_whole_bodies_carry_the_same_audio(candidate_url):
    raw = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream=True, stream_format="audio")))
    sse_pcm = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream_format="sse"), sse=True))
    # stream=true with no stream_format is SSE, as vLLM-Omni 0.30 answers.
    sse_default = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream=True), sse=None))
    whole = httpx.post(f"{candidate_url}/v1/audio/speech", json=speech(response_format="pcm"))
    whole_wav = httpx.post(f"{candidate_url}/v1/audio/speech", json=speech(response_format="wav"))
    assert sse_default.headers["content-type"].startswith("text/event-stream")
    # The same audio, to the last bit but for rounding: the engine's pipe hands the resampler
    # other block boundaries each time.
    for result in (raw, sse_pcm, sse_default):
        assert result.ok, result.error
        assert result.rate == OUTPUT_RATE
        np.testing.assert_allclose(result.samples, raw.samples, atol=1)
    assert whole.headers["content-type"] == "audio/pcm" and whole_wav.headers["content-type"] == "audio/wav"
    np.testing.assert_allclose(np.frombuffer(whole.content, "<i2"), raw.samples, atol=1)
    np.testing.assert_allclose(decode_wav(whole_wav.content).samples, raw.samples, atol=1)  # true sizes
    assert 2.0 < raw.audio_s < 8.0
    assert rms_dbfs(raw.samples) > -40  # speech, not silence
    assert median_f0(Pcm(raw.samples, OUTPUT_RATE)) is not None


def test_a_voxtral_voice_is_an_engine_voice_of_its_language_and_register(candidate_url):
    """The 20 preset names each speak with a different real voice: the preset sweep has a real choice."""
    voices = httpx.get(f"{candidate_url}/v1/audio/voices").json()["voices"]
    assert len([v for v in voices if v != "default"]) == 20 and "neutral_female" in voices
    female = httpx.post(f"{candidate_url}/v1/audio/speech", json=speech(voice="neutral_female"), timeout=30)
    male = httpx.post(f"{candidate_url}/v1/audio/speech", json=speech(voice="neutral_male"), timeout=30)
    high = median_f0(Pcm(np.frombuffer(female.content, "<i2"), OUTPUT_RATE))
    low = median_f0(Pcm(np.frombuffer(male.content, "<i2"), OUTPUT_RATE))
    assert high and low and high > low * 1.3
    assert female.headers["x-voxbench-voice"].startswith("en-us+f1")


def test_every_response_names_the_standin(candidate_url):
    health = httpx.get(f"{candidate_url}/health")
    assert health.headers["x-voxbench-standin"] == "tts-server/vllm-omni/espeak-ng"
    body = speech(response_format="pcm", stream=True, stream_format="audio")
    streamed = httpx.post(f"{candidate_url}/v1/audio/speech", json=body, timeout=30)
    assert streamed.headers["x-voxbench-standin"] == "tts-server/vllm-omni/espeak-ng"
    refused = httpx.post(f"{candidate_url}/v1/audio/speech", json={"input": "hi", "voice": "nobody"})
    assert refused.status_code == 400 and refused.headers["x-voxbench-standin"]


def test_sixteen_concurrent_streams_interleave(candidate_url, knobs):
    knobs(chunk_interval_ms=25.0)
    text = "One stream among many, each paced like a real engine would pace it."

    async def all_at_once():
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as client:
            body = speech(input=text, voice="casual_male", response_format="pcm", stream=True, stream_format="audio")
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
            f"{candidate_url}/v1/audio/speech",
            json={"model": MODEL, "input": text, "voice": "neutral_male"},
            timeout=30,
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
    late = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream=True, stream_format="audio")))
    assert late.ttfb_ms >= 400 and late.ttfa_ms >= 400
    knobs(first_audio_delay_ms=400.0, header_first=True)
    early = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream_format="sse"), sse=True))
    # The headers left at once; the first audio sample only after the delay.
    assert early.ttfb_ms is None or early.ttfb_ms >= 400  # SSE's first byte is an event: it carries audio
    assert early.ttfa_ms >= 400


def test_leading_silence_chunk_size_stall_and_noise(candidate_url, knobs):
    knobs(leading_silence_ms=500.0, chunk_ms=100.0, stall_after_ms=300.0, stall_ms=600.0)
    body = speech(response_format="pcm", stream=True, stream_format="sse")

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
                    data = next(line for line in block.split(b"\n") if line.startswith(b"data: "))
                    out.append((loop.time(), json.loads(data[6:])))
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
    noisy = asyncio.run(fetch(candidate_url, speech(response_format="pcm", stream=True, stream_format="audio")))
    assert noisy.ok and noisy.audio_s > 1.0
    assert median_f0(Pcm(noisy.samples, OUTPUT_RATE)) is None  # no voice in it, only noise


def test_bad_knobs_are_refused(candidate_url):
    for change in ({"first_audio_delay_ms": -1}, {"noise": 3}, {"no_such_knob": 1}):
        assert httpx.post(f"{candidate_url}/admin/knobs", json=change).status_code == 400


def test_chatterbox_face_takes_the_published_api_and_refuses_anything_else(
    incumbent_url, incumbent_token, reference_path
):
    """panda's API: {text, reference_audio, exaggeration, cfg_weight, temperature} and the token header;
    raw PCM back with its shape in X-Sample-Rate / X-Channels / X-Format."""
    body = {"text": "Good morning. The kettle is on.", "exaggeration": 0.3, "cfg_weight": 0.3, "temperature": 0.6}
    token = {"X-Internal-Token": incumbent_token}
    assert httpx.post(f"{incumbent_url}/tts", json=body).status_code == 401
    assert httpx.post(f"{incumbent_url}/tts", json=body, headers={"X-Internal-Token": "wrong"}).status_code == 401
    plain = httpx.post(f"{incumbent_url}/tts", json=body, headers=token, timeout=30)
    assert plain.status_code == 200, plain.text
    assert plain.headers["x-sample-rate"] == str(OUTPUT_RATE) and plain.headers["x-channels"] == "1"
    assert plain.headers["x-format"] == "pcm_s16le" and plain.headers["content-type"] == "application/octet-stream"
    duration = float(plain.headers["x-audio-duration"])
    assert abs(duration - len(plain.content) / 2 / OUTPUT_RATE) < 0.01 and 1.0 < duration < 6.0
    inline = base64.b64encode(reference_path.read_bytes()).decode()
    cloned = httpx.post(f"{incumbent_url}/tts", json={**body, "reference_audio": inline}, headers=token, timeout=30)
    assert cloned.status_code == 200 and "cloned" in cloned.headers["x-voxbench-voice"]
    # What other APIs send is refused, as a strict FastAPI model refuses it.
    for wrong in ({"audio_prompt": inline}, {"voice": "kal16"}, {"input": "hi"}):
        refused = httpx.post(f"{incumbent_url}/tts", json={**body, **wrong}, headers=token)
        assert refused.status_code == 422, wrong
        assert refused.json()["detail"][0]["loc"][0] == "body"
    assert httpx.post(f"{incumbent_url}/v1/audio/speech", json={"model": "x", "input": "y"}).status_code == 404
