"""The candidate stand-in's API: vLLM-Omni serving Voxtral, as a pinned release does.

Every speech request is validated by the release's own ``OpenAICreateSpeechRequest`` (loaded
from its wheel, see :mod:`bench_py.standins.upstream`), then handled in the release's order:
its model-name check, Voxtral's own checks (texts read from the release's source), the
streaming rules, then synthesis by a real engine. Statuses and error bodies are vLLM's
(``{"error": {"message", "type", "param", "code"}}``); what differs between 0.18 and 0.30
(SSE, ``/health``'s body, ``default`` in the voice list, how the open weights refuse
``ref_audio``, the status of an engine failure) follows :class:`~bench_py.standins.upstream.Release`.

The open Voxtral weights cannot clone: 0.30 refuses ``ref_audio`` with a 400 before generating;
with 0.18 the request reaches the engine, which fails and dies. ``--encoder-weights`` plays
the full checkpoint, which clones (the reference conditions the engine's voice).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from aiohttp import web

from bench_py.audio import OUTPUT_RATE, Pcm, encode_wav, wav_header
from bench_py.standins import upstream
from bench_py.standins.engines import EngineError, SpeechEngine, VoiceParams
from bench_py.standins.tts_server import (
    NVRTC_TRACEBACK,
    Face,
    HttpError,
    Knobs,
    decode_base64_wav,
    describe,
    die,
)

log = logging.getLogger("voxbench.standin.vllm-omni")

#: Voxtral-4B-TTS-2603's 20 preset voices (public sources; no wheel lists them), each played by
#: an espeak-ng voice of that language and register.
VOXTRAL_VOICES = {
    "casual_female": "en-us+f3",
    "casual_male": "en-us+m3",
    "cheerful_female": "en-us+f4",
    "neutral_female": "en-us+f1",
    "neutral_male": "en-us",
    "ar_male": "ar",
    "de_female": "de+f2",
    "de_male": "de",
    "es_female": "es+f2",
    "es_male": "es",
    "fr_female": "fr+f2",
    "fr_male": "fr",
    "hi_female": "hi+f2",
    "hi_male": "hi",
    "it_female": "it+f2",
    "it_male": "it",
    "nl_female": "nl+f2",
    "nl_male": "nl",
    "pt_female": "pt+f2",
    "pt_male": "pt",
}
_REF_AUDIO_SCHEMES = ("http://", "https://", "data:", "file://")
MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class Rules:
    """One release's rules: its request model, its texts, its own stage config."""

    source: upstream.Source
    request_model: Any
    texts: upstream.VoxtralTexts
    stage_config: dict[str, Any]

    @property
    def release(self) -> upstream.Release:
        return self.source.release

    @property
    def vllm_version(self) -> str:
        """The vLLM release it runs on (same minor: vLLM-Omni's own pairing rule)."""
        return f"{self.release.minor}.0"

    def stage_utilizations(self) -> list[float]:
        """``gpu_memory_utilization`` of each stage in the release's own config."""
        return stage_shares(self.stage_config)


def stage_shares(config: dict[str, Any]) -> list[float]:
    """Each stage's ``gpu_memory_utilization``: 0.18's ``stage_args[].engine_args`` or 0.30's ``stages[]``."""
    if "stage_args" in config:
        return [float(s["engine_args"]["gpu_memory_utilization"]) for s in config["stage_args"]]
    return [float(s["gpu_memory_utilization"]) for s in config["stages"]]


def rules_from(location: str | Path) -> Rules:
    source = upstream.Source(Path(location))
    return Rules(
        source,
        upstream.speech_request_model(source),
        upstream.voxtral_texts(source),
        yaml.safe_load(upstream.stage_config_text(source)),
    )


@dataclass
class Loaded:
    """What the engine loaded: per-stage memory share and where it came from."""

    utilizations: list[float]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


def _error(status: int, message: str, kind: str, param: str | None = None, **extra: Any) -> HttpError:
    return HttpError(status, {"error": {"message": message, "type": kind, "param": param, "code": status, **extra}})


def bad_request(message: str) -> HttpError:
    """What a handler's ``create_error_response`` sends: vLLM's BadRequestError."""
    return _error(400, message, "BadRequestError")


class VllmOmniFace(Face):
    api = "vllm-omni"

    def __init__(
        self,
        engine: SpeechEngine,
        knobs: Knobs,
        rules: Rules,
        served_model: str,
        loaded: Loaded | None = None,
        admin: bool = False,
    ) -> None:
        super().__init__(engine, knobs, admin)
        self.rules, self.served_model = rules, served_model
        self.loaded = loaded or Loaded(rules.stage_utilizations(), f"built-in {rules.release.stage_config}")
        self.created = int(time.time())
        presets = list(engine.presets())
        if engine.name == "espeak-ng":
            self.voices = dict(VOXTRAL_VOICES)
        else:  # another engine plays the same names with what it has
            self.voices = {name: presets[i % len(presets)] for i, name in enumerate(VOXTRAL_VOICES)}
        self._nvrtc_logged = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/audio/voices", self.list_voices)
        app.router.add_post("/v1/audio/speech", self.speech)

    async def prepare(self) -> None:
        self.calibrate = self.knobs.encoder_weights  # the open weights never clone: nothing to condition
        await super().prepare()
        stages = ", ".join(f"stage {i} gpu_memory_utilization={u:g}" for i, u in enumerate(self.loaded.utilizations))
        log.info(
            "vLLM-Omni %s (vLLM %s) stand-in loaded %s (%s)",
            self.rules.release.version,
            self.rules.vllm_version,
            stages,
            self.loaded.source,
        )

    # -- what vLLM serves beside speech -------------------------------------------------------
    async def health(self, _request: web.Request) -> web.Response:
        # 0.18: vLLM's own handler answers (200, no body); 0.30: vLLM-Omni's ({"status": "healthy"}).
        if self.rules.release.health_json:
            return web.json_response({"status": "healthy"})
        return web.Response(status=200)

    async def version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": self.rules.vllm_version})  # vLLM's version, never vLLM-Omni's

    async def models(self, _request: web.Request) -> web.Response:
        entry = {
            "id": self.served_model,
            "object": "model",
            "created": self.created,
            "owned_by": "vllm",
            "root": self.served_model,
            "parent": None,
            "max_model_len": 4096,
            "permission": [],
        }
        return web.json_response({"object": "list", "data": [entry]})

    def _speakers(self) -> list[str]:
        return sorted(self.voices)

    async def list_voices(self, _request: web.Request) -> web.Response:
        listed = self._speakers() + (["default"] if self.rules.release.voices_list_default else [])
        return web.json_response({"voices": sorted(listed), "uploaded_voices": []})

    # -- POST /v1/audio/speech ----------------------------------------------------------------
    def _validated(self, body: Any) -> Any:
        """The release's own model validates the body (FastAPI's 400 on failure)."""
        from pydantic import ValidationError

        try:
            return self.rules.request_model.model_validate(body)
        except ValidationError as error:
            errors = error.errors(include_url=False)
            if self.rules.release.stream_defaults_to_sse:  # 0.30: one line per error, the loc as param
                first = errors[0]["loc"] if errors else ()
                param = ".".join(["body", *(str(p) for p in first)])
                lines = [
                    f"  {json.dumps({k: e.get(k) for k in ('type', 'loc', 'msg')}, default=str)}" for e in errors[:10]
                ]
                message = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''}:\n" + "\n".join(lines)
                raise _error(400, message, "Bad Request", param) from None
            raise _error(400, f"{error} {[e.get('msg') for e in errors]}", "Bad Request") from None

    def _check_model(self, request: Any) -> None:
        if request.model and request.model != self.served_model:
            raise _error(404, f"The model `{request.model}` does not exist.", "NotFoundError", "model")

    def _check_voxtral(self, request: Any) -> None:
        """Voxtral's own checks, with the release's texts."""
        texts = self.rules.texts
        if not request.input or not request.input.strip():
            raise bad_request("Input text cannot be empty")
        if request.voice is None and request.ref_audio is None:
            raise bad_request(texts.missing_voice)
        if request.ref_audio is not None and not (
            isinstance(request.ref_audio, str) and request.ref_audio.startswith(_REF_AUDIO_SCHEMES)
        ):
            raise bad_request(
                "ref_audio must be a URL (http/https), base64 data URL (data:...), or file URI (file://...)"
            )
        if request.voice is not None:
            request.voice = request.voice.lower()
            if request.voice not in self.voices:
                raise bad_request(texts.invalid_speaker.format(voice=request.voice, names=", ".join(self._speakers())))
        if request.max_new_tokens is not None and not 1 <= request.max_new_tokens <= MAX_NEW_TOKENS:
            raise bad_request(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")

    def _voice(self, request: Any) -> VoiceParams:
        """The voice to speak with; a ``ref_audio`` the weights cannot use ends as the release ends it."""
        texts = self.rules.texts
        if request.ref_audio is not None and not self.knobs.encoder_weights:
            if texts.clone_refusal:  # 0.30: refused before generating
                raise bad_request(texts.clone_refusal)
            if self._clone_kills_engine(request):  # 0.18: the engine tries, fails and dies
                self._engine_dies(texts.encoder_error)
        if request.voice is None:  # only the full checkpoint gets here: it clones (a named voice wins over ref_audio)
            return self.engine.condition(decode_base64_wav(request.ref_audio, "ref_audio", bad_request))
        return self.engine.preset(self.voices[request.voice])

    def _clone_kills_engine(self, request: Any) -> bool:
        """0.18 with the open weights: a ``ref_audio`` request reaches the engine, which dies of it."""
        texts = self.rules.texts
        return (
            request.ref_audio is not None
            and request.voice is None
            and not self.knobs.encoder_weights
            and not texts.clone_refusal
        )

    def _engine_dies(self, error: str) -> None:
        """0.18 with the open weights: the stage raises, the client gets a 400, the engine is gone."""
        request_id = f"speech-{secrets.token_hex(16)}"
        log.error(
            'Traceback (most recent call last):\n  File "vllm_omni/model_executor/models/voxtral_tts/'
            'voxtral_tts_audio_tokenizer.py", line 981, in encode_waveforms\nRuntimeError: %s',
            error,
        )
        detail = {"request_id": request_id, "stage_id": 0, "error": error}
        loop = asyncio.get_running_loop()
        loop.call_later(
            0.3,
            die,
            70,
            "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.",
        )
        raise bad_request(f"Speech generation failed: {detail}")

    async def speech(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.record_request(request, raw)
        if request.content_type != "application/json":
            raise _error(400, "Unsupported Media Type: Only 'application/json' is allowed", "Bad Request")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise _error(400, f"JSON decode error: {error}", "Bad Request", "body") from None
        release = self.rules.release
        speech = self._validated(body)
        if release.stream_defaults_to_sse:  # 0.30 checks these before the model name
            if isinstance(speech.voice, str) and speech.voice.lower() == "default":
                speech.voice = None
            if speech.sample_rate is not None:
                raise bad_request("sample_rate is not supported by the current TTS model")
        self._check_model(speech)
        self._check_voxtral(speech)
        self.count_speech_request()
        if self.knobs.nvrtc_error and not self._nvrtc_logged:
            self._nvrtc_logged = True
            log.error(NVRTC_TRACEBACK)
        if release.stream_defaults_to_sse:
            raw_stream = speech.stream_format == "audio"
            sse = not raw_stream and (speech.stream or speech.stream_format == "sse")
            streaming = raw_stream or sse
            if streaming and speech.speed not in (None, 1.0):
                label = "SSE streaming" if sse else "Streaming"
                raise bad_request(
                    f"{label} is not supported with speed adjustment. "
                    "Use a non-streaming request or remove the speed parameter."
                )
        else:
            raw_stream, sse, streaming = speech.stream, False, speech.stream
            if streaming and speech.response_format not in ("pcm", "wav"):
                raise bad_request(
                    f"Streaming is only supported for 'pcm' and 'wav' formats. Got '{speech.response_format}'. "
                    "For other formats, use stream=False."
                )
        if raw_stream and self._clone_kills_engine(speech):
            # 0.18 streamed: StreamingResponse sends its 200 before the stage runs; the stage then
            # fails, the body ends short and the engine dies (the unstreamed request gets the 400).
            response = web.StreamResponse(headers={"Content-Type": "audio/pcm", "X-Voxbench-Standin": self.label})
            await response.prepare(request)
            with contextlib.suppress(HttpError):
                self._engine_dies(self.rules.texts.encoder_error)
            if request.transport:
                request.transport.close()
            return response
        params = self._voice(speech).with_speed(1.0 if streaming else float(speech.speed or 1.0))
        if sse:
            return await self._sse(request, speech, params)
        if raw_stream:
            return await self._raw_stream(request, speech, params)
        return await self._whole(speech, params)

    def _response(self, content_type: str, params: VoiceParams) -> web.StreamResponse:
        # Streams carry no custom headers upstream; the stand-in still names itself (and the voice it used).
        return web.StreamResponse(
            headers={
                "Content-Type": content_type,
                "X-Voxbench-Standin": self.label,
                "X-Voxbench-Voice": describe(params),
            }
        )

    async def _raw_stream(self, request: web.Request, speech: Any, params: VoiceParams) -> web.StreamResponse:
        if speech.response_format == "wav" and self.knobs.streams_wav:
            response = self._response("audio/wav", params)
            header = wav_header(OUTPUT_RATE)  # streaming: the size fields are placeholders
            pcm = await self._stream_or_cut(
                request, response, speech.input, params, lambda c: c.astype("<i2").tobytes(), header
            )
            if pcm is not None:
                await response.write_eof()
            return response
        if speech.response_format == "wav":
            # Voxtral's output carries no sample rate, which WAV streaming needs: the 200 is out, the body aborts.
            response = self._response("audio/wav", params)
            await response.prepare(request)
            log.error("ValueError: First audio output must include sample rate metadata for WAV streaming")
            if request.transport:
                request.transport.close()
            return response
        response = self._response("audio/pcm", params)
        if (
            await self._stream_or_cut(request, response, speech.input, params, lambda c: c.astype("<i2").tobytes())
            is not None
        ):
            await response.write_eof()
        return response

    async def _sse(self, request: web.Request, speech: Any, params: VoiceParams) -> web.StreamResponse:
        response = self._response("text/event-stream; charset=utf-8", params)

        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

        if speech.response_format != "pcm":
            await response.prepare(request)
            message = "First audio output must include sample rate metadata for WAV streaming"
            error = {"message": message, "type": "server_error", "param": None, "code": 500}
            await response.write(event("speech.audio.error", {"type": "speech.audio.error", "error": error}))
            await response.write_eof()
            return response

        def delta(chunk: np.ndarray) -> bytes:
            audio = base64.b64encode(chunk.astype("<i2").tobytes()).decode()
            return event("speech.audio.delta", {"type": "speech.audio.delta", "audio": audio, "response_format": "pcm"})

        frames = await self._stream_or_cut(request, response, speech.input, params, delta)
        if frames is not None:
            usage = {
                "input_tokens": 0,
                "output_tokens": frames // 1920,  # 12.5 codec frames per second of 24 kHz audio
                "total_tokens": frames // 1920,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 0},
            }
            await response.write(event("speech.audio.done", {"type": "speech.audio.done", "usage": usage}))
            await response.write_eof()
        return response

    async def _stream_or_cut(
        self,
        request: web.Request,
        response: web.StreamResponse,
        text: str,
        params: VoiceParams,
        encode: Any,
        first: bytes = b"",
    ) -> int | None:
        try:
            sent = await self.stream_pcm(request, response, text, params, encode, first)
        except EngineError as error:
            log.error("engine failed: %s", error)
            if not response.prepared:
                raise _error(
                    self.rules.release.engine_failure_status,
                    f"Speech generation failed: {error}",
                    "InternalServerError",
                ) from None
            if request.transport:  # mid-stream the status is out: the body just ends
                request.transport.close()
            return None
        except ConnectionResetError:
            log.info("client went away mid-stream")
            return None
        if not response.prepared:
            await response.prepare(request)
        return sent

    async def _whole(self, speech: Any, params: VoiceParams) -> web.Response:
        if speech.response_format not in ("pcm", "wav"):
            raise bad_request(f"this stand-in encodes pcm and wav only, not {speech.response_format}")
        samples = await self.synthesize(speech.input, params)
        payload = (
            encode_wav(Pcm(samples, OUTPUT_RATE))
            if speech.response_format == "wav"
            else samples.astype("<i2").tobytes()
        )
        headers = {"X-Voxbench-Voice": describe(params)}
        if self.rules.release.stream_defaults_to_sse:
            tokens = str(len(samples) // 1920)
            headers.update(
                {
                    "X-VLLM-OMNI-INPUT-TOKENS": "0",
                    "X-VLLM-OMNI-OUTPUT-TOKENS": tokens,
                    "X-VLLM-OMNI-TOTAL-TOKENS": tokens,
                }
            )
        content_type = "audio/wav" if speech.response_format == "wav" else "audio/pcm"
        return web.Response(body=payload, headers=headers, content_type=content_type)
