"""Mistral's hosted speech API, for the optional prescreen: cloning from base64 ``ref_audio``,
SSE events named by ``event:`` lines carrying base64 ``audio_data``, and ``pcm`` meaning float32
little-endian samples. The key arrives as ``Authorization: Bearer``."""

from __future__ import annotations

import base64
import hmac
import json

import numpy as np
from aiohttp import web

from bench_py.audio import OUTPUT_RATE, wav_header
from bench_py.standins.engines import SpeechEngine
from bench_py.standins.tts_server import Face, HttpError, Knobs, decode_base64_wav, describe, json_body

RESPONSE_FORMATS = ("pcm", "wav")


def _error(message: str, param: str | None = None, status: int = 400, code: str | None = None) -> HttpError:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return HttpError(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


class HostedFace(Face):
    api = "mistral-hosted"

    def __init__(self, engine: SpeechEngine, knobs: Knobs, model: str, key: str | None, admin: bool = False) -> None:
        super().__init__(engine, knobs, admin)
        self.model, self.key = model, key

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/audio/speech", self.speech)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        if self.key is not None and not hmac.compare_digest(
            request.headers.get("Authorization", ""), f"Bearer {self.key}"
        ):
            raise _error("missing or wrong API key (Authorization: Bearer ...)", status=401, code="unauthorized")
        body = await json_body(request, _error)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise _error("'input' must be a non-empty string", "input")
        if body.get("model") != self.model:
            raise _error(f"unknown model {body.get('model')!r}; this server serves '{self.model}'", "model", 404)
        response_format = body.get("response_format", "mp3")
        if response_format not in RESPONSE_FORMATS:
            raise _error("this stand-in serves response_format pcm (float32) or wav", "response_format")
        if body.get("ref_audio"):
            params = self.engine.condition(decode_base64_wav(body["ref_audio"], "ref_audio", _error))
        else:
            voice = body.get("voice_id", self.engine.presets()[0])
            if voice not in self.engine.presets():
                raise _error(f"unknown voice_id {voice!r}", "voice_id")
            params = self.engine.preset(voice)
        self.count_speech_request()

        header = [wav_header(OUTPUT_RATE)] if response_format == "wav" else []

        def encode(chunk: np.ndarray) -> bytes:
            pcm = (chunk / 32768.0).astype("<f4") if response_format == "pcm" else chunk.astype("<i2")
            audio = (header.pop() if header else b"") + pcm.tobytes()  # a WAV stream's header rides the first event
            data = json.dumps({"audio_data": base64.b64encode(audio).decode()})
            return f"event: speech.audio.delta\ndata: {data}\n\n".encode()

        if body.get("stream"):
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "X-Voxbench-Voice": describe(params)}
            )
            sent = await self.stream_pcm(request, response, text, params, encode)
            done = json.dumps({"usage": {"input_characters": len(text), "output_samples": sent}})
            await response.write(f"event: speech.audio.done\ndata: {done}\n\n".encode())
            await response.write_eof()
            return response
        samples = await self.synthesize(text, params)
        if response_format == "pcm":
            payload = (samples / 32768.0).astype("<f4").tobytes()
        else:
            payload = wav_header(OUTPUT_RATE, 2 * len(samples)) + samples.astype("<i2").tobytes()
        return web.json_response({"audio_data": base64.b64encode(payload).decode()})
