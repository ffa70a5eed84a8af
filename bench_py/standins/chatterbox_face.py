"""The incumbent stand-in's API: the production Chatterbox server on "panda", as published.

``POST /tts`` takes ``{text, reference_audio, exaggeration, cfg_weight, temperature}`` and the
internal token in ``X-Internal-Token``, and answers raw PCM with its shape in the headers
``X-Sample-Rate``, ``X-Channels``, ``X-Format`` (and ``X-Audio-Duration`` when the body is sent
whole). A FastAPI server with a strict model: any other field is refused with a 422, as a
client speaking another API must be. Without ``reference_audio`` it speaks in its built-in
voice; with one it clones from it — a path on the server (under ``--references-dir``) or the
clip itself, base64.

Whether the real server streams is not published, so both are played: ``--delivery whole``
(one body with a Content-Length, as ``Response(content=...)`` sends) or ``streamed`` (chunked
as synthesized; no duration header, since it is not known up front).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench_py.standins.engines import EngineError, SpeechEngine, VoiceParams
from bench_py.standins.tts_server import Face, HttpError, Knobs, decode_wav_payload, describe, json_body

TOKEN_HEADER = "X-Internal-Token"
#: What ``X-Format`` says of the body: little-endian signed 16-bit PCM.
PCM_FORMAT = "pcm_s16le"


class TtsRequest(BaseModel):
    """The published request; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)
    reference_audio: str | None = None
    exaggeration: float = Field(default=0.5, ge=0.0, le=2.0)
    cfg_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    temperature: float = Field(default=0.8, gt=0.0, le=5.0)


def _detail(status: int, detail: Any) -> HttpError:
    return HttpError(status, {"detail": detail})


class ChatterboxFace(Face):
    api = "chatterbox"

    def __init__(
        self,
        engine: SpeechEngine,
        knobs: Knobs,
        token: str | None,
        sample_rate: int,
        delivery: str,
        references_dir: str | None,
        admin: bool = False,
    ) -> None:
        super().__init__(engine, knobs, admin)
        self.token, self.rate, self.delivery = token, sample_rate, delivery
        self.references = Path(references_dir).resolve() if references_dir else None

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_post("/tts", self.tts)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": "chatterbox", "sample_rate": self.rate})

    def _reference(self, value: str) -> VoiceParams:
        """A clip on the server (a path under the references directory) or the clip itself (base64)."""

        def fail(message: str) -> HttpError:
            return _detail(400, message)

        if value.startswith("data:") or (len(value) > 256 and "/" not in value[:64]):
            return self.engine.condition(_decode_inline(value, fail))
        if self.references is None:
            raise fail("reference_audio names a file, and this server has no references directory")
        path = (self.references / value).resolve()
        if not path.is_relative_to(self.references) or not path.is_file():
            raise fail(f"reference_audio file not found: {value}")
        return self.engine.condition(decode_wav_payload(path.read_bytes(), "reference_audio", fail))

    async def tts(self, request: web.Request) -> web.StreamResponse:
        if self.token is not None and not hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token):
            raise _detail(401, f"missing or wrong {TOKEN_HEADER}")
        raw = await request.read()
        self.record_request(request, raw)
        body = await json_body(request, lambda message: _detail(400, message))
        try:
            tts = TtsRequest.model_validate(body)
        except ValidationError as error:
            errors = error.errors(include_url=False)
            raise _detail(422, [{**e, "loc": ["body", *e["loc"]]} for e in errors]) from None
        self.count_speech_request()
        params = (
            self._reference(tts.reference_audio)
            if tts.reference_audio
            else self.engine.preset(self.engine.presets()[0])
        )
        headers = {
            "X-Sample-Rate": str(self.rate),
            "X-Channels": "1",
            "X-Format": PCM_FORMAT,
            "X-Voxbench-Voice": f"{describe(params)} exaggeration={tts.exaggeration:g} "
            f"cfg_weight={tts.cfg_weight:g} temperature={tts.temperature:g}",
        }
        try:
            if self.delivery == "whole":
                samples = await self.synthesize(tts.text, params, self.rate)
                headers["X-Audio-Duration"] = f"{len(samples) / self.rate:.3f}"
                return web.Response(
                    body=samples.astype("<i2").tobytes(), headers=headers, content_type="application/octet-stream"
                )
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream", **headers})
            await self.stream_pcm(
                request, response, tts.text, params, lambda c: c.astype("<i2").tobytes(), rate=self.rate
            )
            await response.write_eof()
            return response
        except EngineError as error:
            raise _detail(500, f"synthesis failed: {error}") from None


def _decode_inline(value: str, fail: Any) -> Any:
    payload = value.partition(",")[2] if value.startswith("data:") else value
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise fail("reference_audio is neither a file on this server nor base64 audio") from None
    return decode_wav_payload(raw, "reference_audio", fail)
