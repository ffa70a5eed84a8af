"""Turning the bytes TTS servers stream into audio samples: pure functions, no sockets.

A decoder is fed network chunks as they arrive and returns the int16 samples each chunk
completes. What counts as audio is decided by the transport and format the request asked
for, never by sniffing:

* raw PCM (int16 little-endian): every complete sample is audio;
* WAV streams: the header is skipped (its size fields may be placeholders) and samples counted;
* SSE ``speech.audio.delta`` events: base64 audio in ``audio`` (OpenAI, vLLM-Omni) or
  ``audio_data`` (Mistral), wrapping raw PCM or a WAV stream.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np

from bench_py.audio import AudioFormatError, IncompleteWavHeader, parse_wav_header


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
    payload: dict


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
            if not lines:
                continue  # comments and keep-alives
            text = b"\n".join(lines).decode()
            if text == "[DONE]":
                events.append(SseEvent("done", {}))
                continue
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                raise StreamDecodeError(f"SSE data is not JSON: {text[:80]!r}") from None
            events.append(SseEvent(str(payload.get("type", "")), payload))
        return events


@dataclass
class SseAudioDecoder:
    """``speech.audio.delta`` events carrying base64 audio of the requested format."""

    response_format: str = "pcm"
    done: bool = False
    _events: SseParser = field(default_factory=SseParser)
    _inner: PcmDecoder | WavStreamDecoder | None = None

    def __post_init__(self) -> None:
        self._inner = WavStreamDecoder() if self.response_format == "wav" else PcmDecoder()

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
                pieces.append(self._inner.feed(base64.b64decode(encoded)))
            elif event.type == "error" or "error" in event.payload:
                raise StreamDecodeError(f"the server reported an error mid-stream: {event.payload}")
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


def make_decoder(response_format: str, sse: bool) -> PcmDecoder | WavStreamDecoder | SseAudioDecoder:
    """The decoder for what the request asked: ``response_format`` pcm|wav, SSE or raw transport."""
    if response_format not in ("pcm", "wav"):
        raise ValueError(f"cannot decode response_format {response_format!r}; voxbench measures pcm or wav")
    if sse:
        return SseAudioDecoder(response_format)
    return WavStreamDecoder() if response_format == "wav" else PcmDecoder()
