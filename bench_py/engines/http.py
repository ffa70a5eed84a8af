"""Engines reached over HTTP: the OpenAI speech API and the incumbent's own API.

A target turns (text, voice condition) into one streamed request; the streaming client
measures it. Adding an engine with another API means adding a target here, nothing else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bench_py.config.model import ReferenceAudio

Condition = Literal["cloned", "preset"]


@dataclass(frozen=True)
class SpeechRequest:
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may carry a token
    response_format: str = "pcm"
    sse: bool | None = False  # None: the server chooses (Content-Type decides)
    sample_format: str = "s16le"
    rate: int | None = None  # raw PCM's rate when nothing in the response says it (the engine's documented one)
    shape_from_headers: bool = False  # rate, channels and sample format come from the response's headers


def data_url(wav_path: str | Path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(Path(wav_path).read_bytes()).decode()


def stream_body(model: str, text: str) -> dict[str, Any]:
    """A raw int16 PCM stream, as both vLLM-Omni releases serve it for Voxtral: ``stream_format``
    named (0.30 streams SSE without it; 0.18 refuses ``sse``), ``pcm`` (a WAV stream fails for
    Voxtral: its output carries no rate)."""
    return {"model": model, "input": text, "response_format": "pcm", "stream": True, "stream_format": "audio"}


@dataclass(frozen=True)
class OpenAISpeechTarget:
    """``POST /v1/audio/speech`` streamed as raw PCM (the seed's TTFA: first audio byte of the stream)."""

    url: str
    model: str
    preset_voice: str
    reference_wav: str
    substitute_voice: str | None = None  # an engine that cannot clone: the closest preset stands in
    sample_rate: int | None = None  # no header tells a raw stream's rate: the engine's documented one

    def request(self, text: str, condition: Condition) -> SpeechRequest:
        body = stream_body(self.model, text)
        if condition == "cloned" and self.substitute_voice:
            body["voice"] = self.substitute_voice
        elif condition == "cloned":
            body["ref_audio"] = data_url(self.reference_wav)
        else:
            body["voice"] = self.preset_voice
        return SpeechRequest(self.url, body, rate=self.sample_rate)


@dataclass(frozen=True)
class ChatterboxTarget:
    """panda's production API, as published: ``{text, reference_audio, exaggeration, cfg_weight,
    temperature}`` with the internal token in a header; raw PCM back, its rate, channels and
    sample format in ``X-Sample-Rate``, ``X-Channels``, ``X-Format``. The `preset` condition is
    the server's built-in voice: no ``reference_audio``."""

    url: str
    reference_audio: str  # what the server is given: a path on it, or the clip as base64
    exaggeration: float
    cfg_weight: float
    temperature: float
    token: str | None = field(default=None, repr=False)
    token_header: str = "X-Internal-Token"

    def request(self, text: str, condition: Condition) -> SpeechRequest:
        body: dict[str, Any] = {
            "text": text,
            "exaggeration": self.exaggeration,
            "cfg_weight": self.cfg_weight,
            "temperature": self.temperature,
        }
        if condition == "cloned":
            body["reference_audio"] = self.reference_audio
        headers = {self.token_header: self.token} if self.token else {}
        return SpeechRequest(self.url, body, headers, shape_from_headers=True)


def reference_audio_value(setting: ReferenceAudio, reference_name: str, reference_wav: str) -> str:
    """``incumbent.reference_audio``: a path on the incumbent's host, or the clip itself (base64)."""
    if setting.send_as == "base64":
        return base64.b64encode(Path(reference_wav).read_bytes()).decode()
    return setting.path.format(name=reference_name)


def incumbent_target(incumbent: Any, reference_wav: str, reference_name: str, token_file: str | None = None) -> Any:
    """The incumbent as configured (``config.incumbent``): panda's published API or an OpenAI-style one.
    The token is read from its file here, at call time, and never written anywhere."""
    path = token_file or incumbent.token_file
    token = Path(path).expanduser().read_text().strip() if path else None
    if incumbent.api == "chatterbox":
        reference = reference_audio_value(incumbent.reference_audio, reference_name, reference_wav)
        knobs = (incumbent.exaggeration, incumbent.cfg_weight, incumbent.temperature)
        return ChatterboxTarget(incumbent.url, reference, *knobs, token, incumbent.token_header)
    return OpenAISpeechTarget(incumbent.url, incumbent.model, incumbent.preset_voice or "", reference_wav)


@dataclass(frozen=True)
class MistralHostedTarget:
    """Mistral's hosted ``/v1/audio/speech``: cloning with base64 ``ref_audio`` (no data: URL),
    SSE events carrying base64 float32 PCM in ``audio_data``, the key as a Bearer token."""

    url: str
    model: str
    preset_voice: str
    reference_wav: str
    key: str = field(default="", repr=False)

    def request(self, text: str, condition: Condition) -> SpeechRequest:
        body: dict[str, Any] = {"model": self.model, "input": text, "response_format": "pcm", "stream": True}
        if condition == "cloned":
            body["ref_audio"] = base64.b64encode(Path(self.reference_wav).read_bytes()).decode()
        else:
            body["voice_id"] = self.preset_voice
        headers = {"Authorization": f"Bearer {self.key}"}
        return SpeechRequest(self.url, body, headers, response_format="pcm", sse=True, sample_format="f32le")
