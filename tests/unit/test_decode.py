"""Stream decoders: the same audio from raw PCM, WAV and SSE, split at any byte."""

import base64
import json

import numpy as np
import pytest

from bench_py.audio import wav_header
from bench_py.measure.decode import StreamDecodeError, decoder_for_response, make_decoder

SAMPLES = (np.arange(-3000, 3000, 7) * 5).astype(np.int16)


def sse(payloads: list[bytes], key: str = "audio") -> bytes:
    events = [
        f"data: {json.dumps({'type': 'speech.audio.delta', key: base64.b64encode(p).decode()})}\n\n" for p in payloads
    ]
    events.append('data: {"type": "speech.audio.done"}\n\n')
    return ": keep-alive\n\n".join(events).encode()


def feed_in_pieces(decoder, data: bytes, size: int) -> np.ndarray:
    out = [decoder.feed(data[i : i + size]) for i in range(0, len(data), size)]
    return np.concatenate(out)


@pytest.mark.parametrize("size", [1, 3, 7, 4096])
def test_every_transport_decodes_to_the_same_samples(size):
    pcm = SAMPLES.tobytes()
    wav = wav_header(24000) + pcm
    cases = [
        (make_decoder("pcm", sse=False), pcm),
        (make_decoder("wav", sse=False), wav),
        (make_decoder("pcm", sse=True), sse([pcm[:1001], pcm[1001:]])),
        (make_decoder("wav", sse=True), sse([wav[:30], wav[30:]])),
    ]
    for decoder, data in cases:
        np.testing.assert_array_equal(feed_in_pieces(decoder, data, size), SAMPLES)


def test_mistral_audio_data_key_is_understood():
    decoder = make_decoder("pcm", sse=True)
    np.testing.assert_array_equal(decoder.feed(sse([SAMPLES.tobytes()], key="audio_data")), SAMPLES)
    assert decoder.done


def test_wrong_transport_fails_loudly():
    with pytest.raises(StreamDecodeError):
        make_decoder("wav", sse=False).feed(b"X" * 5000)
    with pytest.raises(StreamDecodeError):
        make_decoder("pcm", sse=True).feed(b"data: not json\n\n")
    with pytest.raises(ValueError, match="mp3"):
        make_decoder("mp3", sse=False)


def test_float32_pcm_decodes_like_int16():
    floats = (SAMPLES.astype("<f4") / 32767.0).tobytes()
    decoder = make_decoder("pcm", sse=False, sample_format="f32le")
    np.testing.assert_allclose(feed_in_pieces(decoder, floats, 3), SAMPLES, atol=1)
    sse_decoder = make_decoder("pcm", sse=True, sample_format="f32le")
    np.testing.assert_allclose(sse_decoder.feed(sse([floats], key="audio_data")), SAMPLES, atol=1)


@pytest.mark.parametrize(
    ("content_type", "response_format", "sse_requested", "decoder"),
    [
        ("audio/pcm", "pcm", False, "PcmDecoder"),
        ("application/octet-stream", "pcm", False, "PcmDecoder"),
        ("audio/wav", "wav", False, "WavStreamDecoder"),
        ("text/event-stream; charset=utf-8", "pcm", None, "SseAudioDecoder"),
        ("audio/pcm", "pcm", None, "PcmDecoder"),
        ("text/event-stream", "wav", True, "SseAudioDecoder"),
    ],
)
def test_decoder_follows_content_type_and_request(content_type, response_format, sse_requested, decoder):
    assert type(decoder_for_response(content_type, response_format, sse_requested)).__name__ == decoder


@pytest.mark.parametrize(
    ("content_type", "response_format", "sse_requested", "message"),
    [
        ("text/event-stream", "pcm", False, "asked for a raw audio stream"),
        ("audio/pcm", "pcm", True, "asked for server-sent events"),
        ("audio/wav", "pcm", False, "asked for pcm, the server sent audio/wav"),
        ("audio/pcm", "wav", False, "asked for wav"),
        ("audio/mpeg", "pcm", False, "not audio voxbench can measure"),
        ("application/json", "pcm", None, "not audio voxbench can measure"),
    ],
)
def test_contradicting_responses_are_refused_not_guessed(content_type, response_format, sse_requested, message):
    with pytest.raises(StreamDecodeError, match=message):
        decoder_for_response(content_type, response_format, sse_requested)
