"""Audio primitives: WAV headers, decoding, streaming resampling, pitch."""

import numpy as np
import pytest

from bench_py.audio import (
    AudioFormatError,
    Pcm,
    StreamResampler,
    decode_wav,
    encode_wav,
    median_f0,
    parse_wav_header,
    resample,
    wav_header,
)


def sine(freq: float, seconds: float, rate: int) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return Pcm((np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16), rate)


def test_wav_round_trip_keeps_samples_and_rate():
    pcm = sine(440, 0.25, 22050)
    back = decode_wav(encode_wav(pcm))
    assert back.rate == 22050
    np.testing.assert_array_equal(back.samples, pcm.samples)


def test_streamed_wav_with_placeholder_sizes_decodes_by_counting_samples():
    pcm = sine(300, 0.1, 24000)
    stream = wav_header(24000) + pcm.samples.tobytes() + b"\x01"  # trailing odd byte
    assert parse_wav_header(stream)[0] == 24000
    assert len(decode_wav(stream).samples) == len(pcm.samples)


@pytest.mark.parametrize("data", [b"", b"RIFF1234WAVX", b"not a wav at all"])
def test_non_wav_is_rejected_with_a_reason(data):
    with pytest.raises(AudioFormatError):
        decode_wav(data)


@pytest.mark.parametrize(("src", "dst"), [(22050, 24000), (16000, 24000), (8000, 24000), (48000, 24000)])
def test_stream_resampler_matches_one_shot_across_any_chunking(src, dst):
    pcm = sine(220, 1.0, src)
    whole = resample(pcm, dst).samples
    resampler = StreamResampler(src, dst)
    rng = np.random.default_rng(1)
    pieces, start = [], 0
    while start < len(pcm.samples):
        size = int(rng.integers(1, 700))
        pieces.append(resampler.process(pcm.samples[start : start + size]))
        start += size
    pieces.append(resampler.flush())
    streamed = np.concatenate(pieces)
    np.testing.assert_array_equal(streamed, whole)
    assert abs(len(streamed) - len(pcm.samples) * dst / src) <= 2
    # The tone survives: its pitch is unchanged by resampling.
    assert median_f0(Pcm(streamed, dst)) == pytest.approx(220, rel=0.03)


def test_median_f0_finds_the_pitch_and_none_in_noise():
    assert median_f0(sine(200, 1.0, 24000)) == pytest.approx(200, rel=0.03)
    noise = Pcm(np.random.default_rng(0).normal(0, 3000, 24000).astype(np.int16), 24000)
    assert median_f0(noise) is None
