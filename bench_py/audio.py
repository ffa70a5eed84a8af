"""Audio primitives shared by every stage: PCM codecs, WAV headers, resampling, pitch.

Pure functions over numpy arrays and bytes, but for reading and (atomically) writing WAV files.
The stand-in images import this module, so it depends on numpy, the standard library and the
project's atomic writer (bench_py.run.state, standard library only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_py.files import atomic_write_bytes

#: Every engine voxbench talks to produces or is resampled to this rate (Voxtral, Chatterbox).
OUTPUT_RATE = 24_000
#: What espeak-ng writes into the size fields of a WAV it streams to a pipe.
WAV_PLACEHOLDER_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class Pcm:
    """Mono 16-bit PCM samples with their rate."""

    samples: np.ndarray  # int16, one channel
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


class AudioFormatError(ValueError):
    """The bytes are not audio voxbench can decode; the message names what was wrong."""


class IncompleteWavHeader(AudioFormatError):
    """Not enough bytes yet to parse the header: a streaming caller should feed more."""


def wav_header(rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte RIFF/WAVE header for mono int16 PCM.

    With ``data_bytes`` unknown (a stream), the size fields carry the placeholder that
    streaming encoders write, so clients must count samples instead of trusting sizes.
    """
    if data_bytes is None:
        riff_size = data_size = WAV_PLACEHOLDER_SIZE
    else:
        riff_size, data_size = 36 + data_bytes, data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_size,
    )


def parse_wav_header(data: bytes) -> tuple[int, int, int, int]:
    """Parse a (possibly streamed) WAV header.

    Returns ``(rate, channels, bits_per_sample, data_offset)``. Raises ``ValueError`` subclass
    :class:`AudioFormatError` when ``data`` is not a PCM WAV or the header is incomplete
    (callers that stream should retry with more bytes when ``len(data)`` is small).
    """
    magic = b"RIFF\0\0\0\0WAVE"
    if any(got != want for got, want in zip(data[:12], magic, strict=False) if want):
        raise AudioFormatError("not a RIFF/WAVE stream")
    if len(data) < 12:
        raise IncompleteWavHeader("incomplete WAV header")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while offset + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        body = offset + 8
        if chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError("WAV data chunk before its fmt chunk")
            audio_format, channels, rate, bits = fmt
            if audio_format not in (1, 0xFFFE):
                raise AudioFormatError(f"WAV format tag {audio_format} is not integer PCM")
            if rate <= 0 or channels <= 0:
                raise AudioFormatError(f"WAV header says {rate} Hz and {channels} channel(s): not audio")
            if bits <= 0 or bits % 8:
                raise AudioFormatError(f"WAV header says {bits} bits per sample")
            return rate, channels, bits, body
        if chunk_id == b"fmt ":
            if body + 16 > len(data):
                break
            audio_format, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt = (audio_format, channels, rate, bits)
        if size == WAV_PLACEHOLDER_SIZE:
            raise AudioFormatError(f"WAV chunk {chunk_id!r} has a placeholder size")
        offset = body + size + (size & 1)
    raise IncompleteWavHeader("incomplete WAV header")


def decode_wav(data: bytes) -> Pcm:
    """Decode a whole WAV file (any PCM width, any channel count) to mono int16.

    Size fields are ignored in favour of the bytes actually present, so streamed WAVs with
    placeholder sizes decode too.
    """
    rate, channels, bits, offset = parse_wav_header(data)
    if bits not in (8, 16, 32):
        raise AudioFormatError(f"{bits}-bit WAV is not supported")
    width = bits // 8
    frame = width * channels
    body = data[offset : offset + (len(data) - offset) // frame * frame]
    if bits == 16:
        samples = np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
    elif bits == 32:
        samples = np.frombuffer(body, "<i4").astype(np.float32) / 2147483648.0
    else:
        samples = (np.frombuffer(body, np.uint8).astype(np.float32) - 128.0) / 128.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return Pcm(float_to_int16(samples), rate)


def read_wav_file(path: str) -> Pcm:
    with open(path, "rb") as handle:
        return decode_wav(handle.read())


def encode_wav(pcm: Pcm) -> bytes:
    body = pcm.samples.astype("<i2").tobytes()
    return wav_header(pcm.rate, len(body)) + body


def write_wav_file(path: str, pcm: Pcm) -> None:
    """Write a WAV atomically: a reader (or a full disk mid-write) never sees half a file."""
    # Readable by others: a listener's web server serves the takes.
    atomic_write_bytes(Path(path), encode_wav(pcm), mode=0o644)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    # A stream may carry NaN or infinities (a broken engine, a fuzzer): silence and full scale.
    samples = np.nan_to_num(np.clip(samples.astype(np.float64), -1.0, 1.0), nan=0.0)
    return np.round(samples * 32767.0).astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


class StreamResampler:
    """Linear-interpolation resampler that keeps state across chunks.

    Streaming engines hand over audio in arbitrary pieces; resampling each piece on its own
    would click at the seams. Output length tracks ``input * dst / src`` exactly over a stream.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        self._step = src_rate / dst_rate
        self._passthrough = src_rate == dst_rate
        self._pos = 0.0
        self._tail = np.zeros(0, np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next int16 piece; returns int16 (possibly empty)."""
        if self._passthrough:
            return samples.astype(np.int16, copy=False)
        buffer = np.concatenate([self._tail, samples.astype(np.float32)])
        last = len(buffer) - 1
        if last < 1 or self._pos >= last:
            self._tail = buffer
            return np.zeros(0, np.int16)
        count = int(np.ceil((last - self._pos) / self._step))
        out = self._interpolate(buffer, self._pos + self._step * np.arange(count))
        new_pos = self._pos + count * self._step
        keep_from = int(new_pos)
        self._tail = buffer[keep_from:]
        self._pos = new_pos - keep_from
        return out

    def flush(self) -> np.ndarray:
        """Emit what remains at the end of a stream (holding the last sample)."""
        if self._passthrough or len(self._tail) == 0:
            return np.zeros(0, np.int16)
        buffer = np.concatenate([self._tail, self._tail[-1:]])
        last = len(self._tail) - 1
        positions = self._pos + self._step * np.arange(max(0, int(np.floor((last - self._pos) / self._step)) + 1))
        self._tail = np.zeros(0, np.float32)
        return self._interpolate(buffer, positions)

    @staticmethod
    def _interpolate(buffer: np.ndarray, positions: np.ndarray) -> np.ndarray:
        index = positions.astype(np.int64)
        frac = (positions - index).astype(np.float32)
        values: np.ndarray = buffer[index] * (1.0 - frac) + buffer[index + 1] * frac
        return np.clip(np.round(values), -32768, 32767).astype(np.int16)


def resample(pcm: Pcm, rate: int) -> Pcm:
    resampler = StreamResampler(pcm.rate, rate)
    return Pcm(np.concatenate([resampler.process(pcm.samples), resampler.flush()]), rate)


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level of int16 samples in dBFS (-inf for digital silence)."""
    if len(samples) == 0:
        return float("-inf")
    level = float(np.sqrt(np.mean(int16_to_float(samples) ** 2)))
    return 20.0 * np.log10(level) if level > 0 else float("-inf")


def median_f0(pcm: Pcm, fmin: float = 60.0, fmax: float = 400.0) -> float | None:
    """Median fundamental frequency (Hz) over voiced frames, by normalized autocorrelation.

    Returns ``None`` when no frame is voiced (silence, noise). Good enough to place a voice in
    a pitch register; it is not a pitch tracker for prosody analysis.
    """
    x = int16_to_float(pcm.samples)
    frame, hop = int(0.04 * pcm.rate), int(0.01 * pcm.rate)
    lag_min, lag_max = int(pcm.rate / fmax), int(pcm.rate / fmin)
    if len(x) < frame or lag_max >= frame:
        return None
    overall = float(np.sqrt(np.mean(x**2))) or 1e-9
    f0s = []
    window = np.hanning(frame).astype(np.float32)
    for start in range(0, len(x) - frame, hop):
        segment = x[start : start + frame]
        if np.sqrt(np.mean(segment**2)) < 0.3 * overall:
            continue
        segment = (segment - segment.mean()) * window
        spectrum = np.fft.rfft(segment, 2 * frame)
        corr = np.fft.irfft(np.abs(spectrum) ** 2)[:frame]
        if corr[0] <= 0:
            continue
        corr = corr / corr[0]
        lag = lag_min + int(np.argmax(corr[lag_min:lag_max]))
        if corr[lag] > 0.5:
            f0s.append(pcm.rate / lag)
    return float(np.median(f0s)) if len(f0s) >= 5 else None


def median_formants(pcm: Pcm, count: int = 3, order: int = 10) -> np.ndarray | None:
    """Median frequencies (Hz) of the first ``count`` formants over voiced frames, by LPC.

    Formants follow the speaker's vocal tract, so they separate voices that share a pitch.
    Returns ``None`` when too few frames yield ``count`` resonances.
    """
    pcm = resample(pcm, 10_000) if pcm.rate != 10_000 else pcm
    x = int16_to_float(pcm.samples)
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])  # pre-emphasis flattens the glottal tilt
    frame, hop = 250, 100  # 25 ms frames, 10 ms hop
    if len(x) < frame:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    energy = np.sqrt(np.mean(frames**2, axis=1))
    window = np.hamming(frame)
    found = []
    for segment in frames[energy > 0.5 * energy.mean()]:
        segment = segment * window
        corr = np.correlate(segment, segment, "full")[frame - 1 : frame + order]
        if corr[0] <= 0:
            continue
        lpc, error = np.zeros(order + 1), corr[0]
        lpc[0] = 1.0
        for i in range(1, order + 1):  # Levinson-Durbin
            k = -(corr[i] + np.dot(lpc[1:i], corr[i - 1 : 0 : -1])) / error
            lpc[1 : i + 1] = lpc[1 : i + 1] + k * np.concatenate([lpc[i - 1 : 0 : -1], [1.0]])
            error *= 1.0 - k * k
            if error <= 0:
                break
        roots = np.roots(lpc)
        roots = roots[np.imag(roots) > 0]
        freqs = np.angle(roots) * pcm.rate / (2 * np.pi)
        bandwidths = -np.log(np.abs(roots)) * pcm.rate / np.pi
        freqs = np.sort(freqs[(bandwidths < 400) & (freqs > 200)])
        if len(freqs) >= count:
            found.append(freqs[:count])
    return np.median(np.array(found), axis=0) if len(found) >= 5 else None
