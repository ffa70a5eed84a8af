"""Turning the bytes TTS servers stream into audio samples: pure functions, no sockets.

A decoder is fed network chunks as they arrive and returns the int16 samples each chunk
completes. What counts as audio is decided by the transport and format the request asked
for, never by sniffing:

* raw PCM, int16 little-endian (OpenAI, vLLM-Omni, the incumbent adapter) or float32
  little-endian (Mistral's hosted ``pcm``): every complete sample is audio;
* WAV streams: the header is skipped (its size fields may be placeholders) and samples counted;
* SSE ``speech.audio.delta`` events: base64 audio in ``audio`` (OpenAI, vLLM-Omni) or
  ``audio_data`` (Mistral), wrapping raw PCM or a WAV stream.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench_py.audio import AudioFormatError, IncompleteWavHeader, float_to_int16, parse_wav_header


class StreamDecodeError(ValueError):
    """The stream does not hold what the request asked for; the message says what arrived."""


@dataclass
class PcmDecoder:
    """Raw int16 little-endian PCM, carrying an odd byte across chunk seams."""

    _carry: bytes = b""

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        usable = len(data) // 2 * 2
        self._carry = data[usable:]
        return np.frombuffer(data[:usable], "<i2").copy()


@dataclass
class Float32PcmDecoder:
    """Raw float32 little-endian PCM in [-1, 1], returned as int16 like every other decoder."""

    _carry: bytes = b""

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        usable = len(data) // 4 * 4
        self._carry = data[usable:]
        return float_to_int16(np.frombuffer(data[:usable], "<f4"))


@dataclass
class ChannelMixer:
    """Interleaved multi-channel PCM from an inner decoder, mixed down to mono."""

    inner: PcmDecoder | Float32PcmDecoder
    channels: int
    _carry: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    def feed(self, data: bytes) -> np.ndarray:
        samples = np.concatenate([self._carry, self.inner.feed(data)])
        usable = len(samples) // self.channels * self.channels
        self._carry = samples[usable:]
        frames = samples[:usable].reshape(-1, self.channels).astype(np.int32)
        mixed: np.ndarray = frames.mean(axis=1)  # numpy types a reduction over an axis as Any
        return mixed.astype(np.int16)


#: How servers spell raw PCM's sample format in a header (panda's X-Format, and common spellings).
HEADER_SAMPLE_FORMATS = {
    "pcm_s16le": "s16le",
    "pcm": "s16le",
    "s16le": "s16le",
    "int16": "s16le",
    "pcm16": "s16le",
    "pcm_16": "s16le",
    "pcm_f32le": "f32le",
    "f32le": "f32le",
    "float32": "f32le",
}


@dataclass(frozen=True)
class PcmShape:
    """What a response's headers say of its raw PCM."""

    rate: int
    channels: int
    sample_format: str
    stated_format: str | None


def shape_from_headers(headers: Any) -> PcmShape:
    """``X-Sample-Rate``, ``X-Channels``, ``X-Format`` (panda's API); refuse what cannot be read
    rather than fall back to a guess."""
    rate_text = headers.get("x-sample-rate")
    if rate_text is None:
        raise StreamDecodeError("the response names no X-Sample-Rate: its PCM cannot be read without a guess")
    try:
        rate = int(rate_text)
        channels = int(headers.get("x-channels", "1"))
    except ValueError:
        raise StreamDecodeError(
            f"X-Sample-Rate {rate_text!r} / X-Channels {headers.get('x-channels')!r} are not whole numbers"
        ) from None
    if not 1000 <= rate <= 384000 or not 1 <= channels <= 8:
        raise StreamDecodeError(f"X-Sample-Rate {rate} / X-Channels {channels} are not a plausible PCM shape")
    stated = headers.get("x-format")
    sample_format = HEADER_SAMPLE_FORMATS.get((stated or "pcm_s16le").strip().lower())
    if sample_format is None:
        raise StreamDecodeError(
            f"X-Format {stated!r} is not a PCM format voxbench reads ({', '.join(HEADER_SAMPLE_FORMATS)})"
        )
    return PcmShape(rate, channels, sample_format, stated)


def shaped_decoder(shape: PcmShape) -> PcmDecoder | Float32PcmDecoder | ChannelMixer:
    inner = Float32PcmDecoder() if shape.sample_format == "f32le" else PcmDecoder()
    return inner if shape.channels == 1 else ChannelMixer(inner, shape.channels)


@dataclass
class WavStreamDecoder:
    """A WAV header followed by int16 PCM; the header's sizes are ignored."""

    rate: int | None = None
    _header: bytes = b""
    _pcm: PcmDecoder = field(default_factory=PcmDecoder)

    #: A header larger than this is not a header.
    MAX_HEADER = 4096

    def feed(self, data: bytes) -> np.ndarray:
        if self.rate is None:
            self._header += data
            try:
                rate, channels, bits, offset = parse_wav_header(self._header)
            except IncompleteWavHeader:
                if len(self._header) < self.MAX_HEADER:
                    return np.zeros(0, np.int16)
                raise StreamDecodeError("expected a WAV stream: no complete header in the first 4 KiB") from None
            except AudioFormatError as error:
                raise StreamDecodeError(f"expected a WAV stream: {error}") from None
            if channels != 1 or bits != 16:
                raise StreamDecodeError(f"expected mono 16-bit WAV, got {channels} channel(s) of {bits}-bit")
            self.rate, data, self._header = rate, self._header[offset:], b""
        return self._pcm.feed(data)


@dataclass
class SseEvent:
    type: str
    payload: dict[str, Any]


@dataclass
class SseParser:
    """Server-sent events split from arbitrary byte chunks (``data:`` lines, blank-line framed)."""

    _buffer: bytes = b""

    def feed(self, data: bytes) -> list[SseEvent]:
        self._buffer += data.replace(b"\r\n", b"\n")
        events = []
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            lines = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
            try:
                names = [line[6:].strip().decode() for line in block.split(b"\n") if line.startswith(b"event:")]
                text = b"\n".join(lines).decode()
            except UnicodeDecodeError:
                raise StreamDecodeError(f"SSE event is not UTF-8: {block[:80]!r}") from None
            if not lines:
                continue  # comments and keep-alives
            if text == "[DONE]":
                events.append(SseEvent("done", {}))
                continue
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                raise StreamDecodeError(f"SSE data is not JSON: {text[:80]!r}") from None
            # OpenAI and vLLM-Omni name the event in the JSON; Mistral's hosted API in an event: line.
            kind = payload.get("type") if isinstance(payload, dict) else None
            events.append(
                SseEvent(str(kind or (names[0] if names else "")), payload if isinstance(payload, dict) else {})
            )
        return events


@dataclass
class SseAudioDecoder:
    """``speech.audio.delta`` events carrying base64 audio of the requested format."""

    response_format: str = "pcm"
    sample_format: str = "s16le"
    done: bool = False
    _events: SseParser = field(default_factory=SseParser)
    _inner: Decoder | None = None

    def __post_init__(self) -> None:
        self._inner = _raw_decoder(self.response_format, self.sample_format)

    def feed(self, data: bytes) -> np.ndarray:
        assert self._inner is not None
        pieces = []
        for event in self._events.feed(data):
            if event.type in ("speech.audio.done", "done"):
                self.done = True
            elif event.type == "speech.audio.delta":
                encoded = event.payload.get("audio", event.payload.get("audio_data"))
                if not isinstance(encoded, str):
                    raise StreamDecodeError("speech.audio.delta event without 'audio' or 'audio_data'")
                try:
                    audio = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    raise StreamDecodeError(f"speech.audio.delta carries bad base64: {encoded[:40]!r}") from None
                pieces.append(self._inner.feed(audio))
            elif event.type == "error" or "error" in event.payload:
                raise StreamDecodeError(f"the server reported an error mid-stream: {event.payload}")
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


Decoder = PcmDecoder | Float32PcmDecoder | WavStreamDecoder | SseAudioDecoder | ChannelMixer
SAMPLE_FORMATS = ("s16le", "f32le")
_WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
_RAW_TYPES = ("audio/pcm", "audio/l16", "audio/raw", "application/octet-stream", "binary/octet-stream")


def _raw_decoder(response_format: str, sample_format: str) -> PcmDecoder | Float32PcmDecoder | WavStreamDecoder:
    if response_format == "wav":
        return WavStreamDecoder()
    return Float32PcmDecoder() if sample_format == "f32le" else PcmDecoder()


def make_decoder(response_format: str, sse: bool, sample_format: str = "s16le") -> Decoder:
    """The decoder for what the request asked: ``response_format`` pcm|wav, SSE or raw transport.

    ``sample_format`` says how raw PCM is encoded (``s16le``, or ``f32le`` for Mistral's hosted API).
    """
    if response_format not in ("pcm", "wav"):
        raise ValueError(f"cannot decode response_format {response_format!r}; voxbench measures pcm or wav")
    if sample_format not in SAMPLE_FORMATS:
        raise ValueError(f"sample_format must be one of {', '.join(SAMPLE_FORMATS)}, not {sample_format!r}")
    if sse:
        return SseAudioDecoder(response_format, sample_format)
    return _raw_decoder(response_format, sample_format)


def decoder_for_response(
    content_type: str | None, response_format: str, sse_requested: bool | None, sample_format: str = "s16le"
) -> Decoder:
    """Decide from the response's Content-Type and the request; refuse what contradicts the request.

    ``sse_requested`` is ``None`` when the request left the transport to the server (``stream``
    without ``stream_format``): then Content-Type decides between SSE and raw bytes.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "text/event-stream":
        if sse_requested is False:
            raise StreamDecodeError("asked for a raw audio stream, the server sent text/event-stream")
        return make_decoder(response_format, True, sample_format)
    if sse_requested:
        raise StreamDecodeError(f"asked for server-sent events, the server sent {kind or 'no Content-Type'}")
    if kind in _WAV_TYPES:
        if response_format != "wav":
            raise StreamDecodeError(f"asked for {response_format}, the server sent {kind}")
        return make_decoder("wav", False)
    if kind in _RAW_TYPES or (kind == "" and response_format == "pcm"):
        if response_format == "wav":
            raise StreamDecodeError(f"asked for wav, the server sent {kind or 'no Content-Type'}")
        return make_decoder("pcm", False, sample_format)
    raise StreamDecodeError(f"the server sent Content-Type {kind!r}, which is not audio voxbench can measure")
