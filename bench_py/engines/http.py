"""Engines reached over HTTP: the OpenAI speech API and the incumbent's own API.

A target turns (text, voice condition) into one streamed request; the streaming client
measures it. Adding an engine with another API means adding a target here, nothing else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Condition = Literal["cloned", "preset"]


@dataclass(frozen=True)
class SpeechRequest:
    url: str
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    response_format: str = "pcm"
    sse: bool | None = False  # None: the server chooses (Content-Type decides)
    sample_format: str = "s16le"


def data_url(wav_path: str | Path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(Path(wav_path).read_bytes()).decode()


@dataclass(frozen=True)
class OpenAISpeechTarget:
    """``POST /v1/audio/speech`` streamed as raw PCM (the seed's TTFA: first audio byte of the stream)."""

    url: str
    model: str
    preset_voice: str
    reference_wav: str
    substitute_voice: str | None = None  # an engine that cannot clone: the closest preset stands in

    def request(self, text: str, condition: Condition) -> SpeechRequest:
        body = {"model": self.model, "input": text, "response_format": "pcm", "stream": True, "stream_format": "audio"}
        if condition == "cloned" and self.substitute_voice:
            body["voice"] = self.substitute_voice
        elif condition == "cloned":
            body["ref_audio"] = data_url(self.reference_wav)
        else:
            body["voice"] = self.preset_voice
        return SpeechRequest(self.url, body)


@dataclass(frozen=True)
class ChatterboxTarget:
    """The incumbent's production API: JSON in, raw int16 PCM out, rate in ``X-Sample-Rate``."""

    url: str
    preset_voice: str
    reference_wav: str
    token: str | None = field(default=None, repr=False)
    token_header: str = "X-Internal-Token"

    def request(self, text: str, condition: Condition) -> SpeechRequest:
        body: dict = {"text": text}
        if condition == "cloned":
            body["audio_prompt"] = data_url(self.reference_wav)
        else:
            body["voice"] = self.preset_voice
        headers = {self.token_header: self.token} if self.token else {}
        return SpeechRequest(self.url, body, headers)


def incumbent_target(incumbent: Any, reference_wav: str, token_file: str | None = None) -> Any:
    """The incumbent as configured (``config.incumbent``): a Chatterbox-style or OpenAI-style API.
    The token is read from its file here, at call time, and never written anywhere."""
    from pathlib import Path

    path = token_file or incumbent.token_file
    token = Path(path).expanduser().read_text().strip() if path else None
    if incumbent.api == "chatterbox":
        return ChatterboxTarget(incumbent.url, incumbent.preset_voice, reference_wav, token, incumbent.token_header)
    return OpenAISpeechTarget(incumbent.url, incumbent.model, incumbent.preset_voice, reference_wav)


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
        body: dict = {"model": self.model, "input": text, "response_format": "pcm", "stream": True}
        if condition == "cloned":
            body["ref_audio"] = base64.b64encode(Path(self.reference_wav).read_bytes()).decode()
        else:
            body["voice_id"] = self.preset_voice
        headers = {"Authorization": f"Bearer {self.key}"}
        return SpeechRequest(self.url, body, headers, response_format="pcm", sse=True, sample_format="f32le")
