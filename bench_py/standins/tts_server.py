"""Stand-in streaming TTS server over real engines.

Two faces of one program:

* ``openai`` (the candidate, as vLLM-Omni serves Voxtral): ``POST /v1/audio/speech`` with
  ``model, input, voice, response_format (pcm|wav), stream, stream_format (audio|sse), speed,
  seed, ref_audio``; ``GET /v1/audio/voices``; ``GET /health``; OpenAI-style errors.
* ``chatterbox`` (the incumbent's production API on another machine): ``POST /tts`` with
  ``text, voice, audio_prompt``, a required token header, raw int16 PCM with the rate in
  ``X-Sample-Rate``.

Audio comes from a real engine, is resampled to 24 kHz and leaves as it is produced. Test
knobs (delays, stalls, leading silence, chunk size, noise) are set on the command line or,
with ``--admin``, at ``POST /admin/knobs``. Every response names the stand-in in
``X-Voxbench-Standin``: a stand-in never pretends to be the engine it plays.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import web

from bench_py.audio import OUTPUT_RATE, AudioFormatError, Pcm, StreamResampler, decode_wav, wav_header
from bench_py.standins.engines import EngineError, SpeechEngine, VoiceParams, make_engine

log = logging.getLogger("voxbench.standin.tts")

RESPONSE_FORMATS = ("pcm", "wav")
UNSUPPORTED_FORMATS = ("mp3", "opus", "aac", "flac")
STREAM_FORMATS = ("audio", "sse")
MAX_INPUT_CHARS = 4096
#: The vLLM-Omni release this stand-in answers as (``--engine-version`` pretends to be another).
STANDIN_VERSION = "0.18.0"
#: What the built-in stage config hard-codes, as vLLM-Omni's does: only a stage config file changes it.
BUILTIN_GPU_MEMORY_UTILIZATION = 0.9
TOKEN_HEADER = "X-Internal-Token"
#: What engines print on a GPU their runtime-compiled kernels do not know (the manual run's sm_121).
NVRTC_TRACEBACK = """engine versions: torch 2.9.0+cu130, cuda 13.0, vllm 0.18.0
Traceback (most recent call last):
  File "/opt/engine/vocoder.py", line 212, in decode
    spectrum = torch.istft(frames, n_fft=1024, hop_length=256, return_complex=False)
  File "/usr/lib/python3/dist-packages/torch/functional.py", line 715, in istft
    return _VF.istft(input, n_fft, hop_length, win_length, window, center, normalized, onesided, length)
RuntimeError: nvrtc: error: invalid value for --gpu-architecture (-arch): compute_121 (jiterator: complex_abs_kernel)"""


@dataclass
class Knobs:
    """Fault and shape injection for tests and rehearsals. All zero means a plain server."""

    first_audio_delay_ms: float = 0.0  # no audio byte leaves before this, from request arrival
    header_first: bool = False  # send headers (and a WAV header) at once, before the delay
    leading_silence_ms: float = 0.0  # digital silence before the speech
    chunk_ms: float = 40.0  # audio per network write
    chunk_interval_ms: float = 0.0  # pause between writes (pacing)
    stall_after_ms: float = 0.0  # after this much audio has been sent ...
    stall_ms: float = 0.0  # ... pause once for this long (a mid-stream stall)
    noise: bool = False  # send white noise of the speech's length instead of speech
    clone_crash: bool = False  # a ref_audio request kills the server, as the open Voxtral weights do
    nvrtc_error: bool = False  # log an NVRTC kernel-compilation traceback (as on GB10) and carry on
    startup_delay_ms: float = 0.0  # /health says "starting" this long after calibration (slow model load)
    die_after_requests: float = 0.0  # the process exits on this speech request (0: never): dies in warmup
    refuse_model: bool = False  # exit at start saying the model's architecture is not supported

    def update(self, changes: dict[str, object]) -> None:
        names = {f.name: f.type for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown knob {key!r}; knobs are: {', '.join(names)}")
            if isinstance(value, bool) != (names[key] in ("bool", bool)) or not isinstance(value, (int, float)):
                raise ValueError(f"knob {key!r} must be a {'boolean' if names[key] in ('bool', bool) else 'number'}")
            if not isinstance(value, bool) and value < 0:
                raise ValueError(f"knob {key!r} must not be negative")
        for key, value in changes.items():
            setattr(self, key, value if isinstance(value, bool) else float(value))
        self.chunk_ms = max(self.chunk_ms, 1.0)


class RequestError(Exception):
    """A client error, reported as an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def response(self) -> web.Response:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}
        return web.json_response(body, status=self.status)


def decode_reference(value: object, param: str) -> Pcm:
    """Decode a ``data:`` URL (or bare base64) holding a WAV reference clip."""
    if not isinstance(value, str) or not value:
        raise RequestError(f"'{param}' must be a base64 data: URL of a WAV file", param)
    payload = value
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if ";base64" not in header:
            raise RequestError(f"'{param}' must be base64-encoded (data:audio/wav;base64,...)", param)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"'{param}' is not valid base64", param) from None
    try:
        pcm = decode_wav(raw)
    except AudioFormatError as error:
        raise RequestError(f"'{param}' is not a PCM WAV file: {error}", param) from None
    if pcm.duration_s < 1.0:
        raise RequestError(f"'{param}' is {pcm.duration_s:.2f} s long; give at least 1 s of speech", param)
    return pcm


async def audio_stream(engine: SpeechEngine, text: str, params: VoiceParams, knobs: Knobs) -> AsyncIterator[np.ndarray]:
    """Engine audio at 24 kHz in chunks of ``knobs.chunk_ms``, with silence and noise knobs applied."""
    chunk = max(1, int(OUTPUT_RATE * knobs.chunk_ms / 1000))
    pending = np.zeros(int(OUTPUT_RATE * knobs.leading_silence_ms / 1000), np.int16)
    noise = np.random.default_rng(0) if knobs.noise else None
    resampler: StreamResampler | None = None
    rate = None

    def shaped(samples: np.ndarray) -> np.ndarray:
        if noise is None:
            return samples
        return np.clip(noise.normal(0, 3000, len(samples)), -32768, 32767).astype(np.int16)

    async for piece in engine.stream(text, params):
        if piece.rate != rate:
            flushed = resampler.flush() if resampler else np.zeros(0, np.int16)
            resampler, rate = StreamResampler(piece.rate, OUTPUT_RATE), piece.rate
            pending = np.concatenate([pending, flushed])
        pending = np.concatenate([pending, resampler.process(piece.samples)])
        while len(pending) >= chunk:
            yield shaped(pending[:chunk])
            pending = pending[chunk:]
    if resampler:
        pending = np.concatenate([pending, resampler.flush()])
    while len(pending):
        yield shaped(pending[:chunk])
        pending = pending[chunk:]


class _Pacer:
    """Applies the timing knobs to writes: first-audio delay, pacing, one stall."""

    def __init__(self, knobs: Knobs, started: float) -> None:
        self._knobs, self._started = knobs, started
        self._sent_ms = 0.0
        self._stalled = False

    async def before(self, audio_ms: float) -> None:
        knobs = self._knobs
        if self._sent_ms == 0.0:
            remaining = knobs.first_audio_delay_ms / 1000 - (time.monotonic() - self._started)
            if remaining > 0:
                await asyncio.sleep(remaining)
        elif knobs.chunk_interval_ms:
            await asyncio.sleep(knobs.chunk_interval_ms / 1000)
        if knobs.stall_ms and not self._stalled and self._sent_ms >= knobs.stall_after_ms > 0:
            self._stalled = True
            await asyncio.sleep(knobs.stall_ms / 1000)
        self._sent_ms += audio_ms


class TtsServer:
    def __init__(
        self,
        engine: SpeechEngine,
        api: str,
        knobs: Knobs,
        model: str,
        token: str | None,
        admin: bool,
        hf_token_present: bool,
    ) -> None:
        self.engine, self.api, self.knobs, self.model = engine, api, knobs, model
        self._token = token
        self._admin = admin
        self._hf_token_present = hf_token_present
        self._ready = False
        self._active_streams = 0
        self.engine_info: dict[str, object] = {
            "version": STANDIN_VERSION,
            "gpu_memory_utilization": BUILTIN_GPU_MEMORY_UTILIZATION,
            "stage_config": "built-in",
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[_stamp_arrival, self._label])
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        if self.api == "openai":
            app.router.add_post("/v1/audio/speech", self.openai_speech)
            app.router.add_get("/v1/audio/voices", self.voices)
            app.router.add_get("/v1/models", self.models)
        elif self.api == "mistral-hosted":
            app.router.add_post("/v1/audio/speech", self.hosted_speech)
        else:
            app.router.add_post("/tts", self.chatterbox_tts)
        if self._admin:
            app.router.add_get("/admin/knobs", self.get_knobs)
            app.router.add_post("/admin/knobs", self.set_knobs)
        app.on_startup.append(self._prepare)
        return app

    @web.middleware
    async def _label(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        try:
            response = await handler(request)
        except RequestError as error:
            response = error.response()
        if not response.prepared:
            response.headers["X-Voxbench-Standin"] = f"tts-server/{self.api}/{self.engine.name}"
        return response

    async def _prepare(self, _app: web.Application) -> None:
        if self.knobs.refuse_model:
            # What vLLM prints for an architecture it has no implementation of, then exits.
            log.error(
                "ValueError: Model architectures ['VoxtralTTSForConditionalGeneration'] are not supported for now. "
                "Supported architectures: ['LlamaForCausalLM', 'Qwen2ForCausalLM']"
            )
            logging.shutdown()
            os._exit(1)

        async def calibrate() -> None:
            started = time.monotonic()
            try:
                await self.engine.prepare()
            except Exception as error:  # a model that cannot load ends the server, as real engines do
                log.error("the %s engine could not start: %s: %s", self.engine.name, type(error).__name__, error)
                logging.shutdown()
                os._exit(1)
            await asyncio.sleep(self.knobs.startup_delay_ms / 1000)
            self._ready = True
            log.info("%s ready after %.1f s of calibration", self.engine.name, time.monotonic() - started)

        self._calibration = asyncio.create_task(calibrate())

    # -- common -------------------------------------------------------------------------------
    async def health(self, _request: web.Request) -> web.Response:
        body = {
            "status": "ok" if self._ready else "starting",
            "standin": True,
            "engine": self.engine.name,
            "api": self.api,
            "model": self.model,
            "active_streams": self._active_streams,
            "hf_token": "present" if self._hf_token_present else "absent",
            **self.engine_info,
        }
        return web.json_response(body, status=200 if self._ready else 503)

    async def version(self, _request: web.Request) -> web.Response:
        """vLLM's ``GET /version``, plus what the stage config actually loaded."""
        return web.json_response(self.engine_info)

    async def voices(self, _request: web.Request) -> web.Response:
        return web.json_response({"voices": list(self.engine.presets())})

    async def models(self, _request: web.Request) -> web.Response:
        entry = {"id": self.model, "object": "model", "owned_by": "voxbench-standin"}
        return web.json_response({"object": "list", "data": [entry]})

    async def get_knobs(self, _request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(self.knobs))

    async def set_knobs(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            self.knobs.update(body)
        except ValueError as error:
            raise RequestError(str(error)) from None
        return web.json_response(dataclasses.asdict(self.knobs))

    def _require_ready(self) -> None:
        if not self._ready:
            raise RequestError("the engine is still starting; retry when /health answers 200", status=503)

    def _voice_params(self, voice: object, reference: Pcm | None, param: str, speed: float) -> VoiceParams:
        if reference is not None:
            return self.engine.condition(reference).with_speed(speed)
        if not isinstance(voice, str) or voice not in self.engine.presets():
            raise RequestError(
                f"unknown voice {voice!r}; GET /v1/audio/voices lists: {', '.join(self.engine.presets())}", param
            )
        return self.engine.preset(voice).with_speed(speed)

    async def _send(
        self,
        request: web.Request,
        params: VoiceParams,
        text: str,
        content_type: str,
        response_format: str,
        sse: bool,
        extra_headers: dict[str, str],
        hosted: bool = False,
    ) -> web.StreamResponse:
        """Stream synthesized audio; nothing is buffered beyond one chunk.

        ``hosted``: Mistral's hosted dialect: SSE events named by ``event:`` lines with base64
        ``audio_data``, and ``pcm`` meaning float32 little-endian samples."""
        started = request["started"]
        knobs = dataclasses.replace(self.knobs)  # a request sees one consistent set of knobs
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream" if sse else content_type,
                "Cache-Control": "no-cache",
                "X-Voxbench-Standin": f"tts-server/{self.api}/{self.engine.name}",
                "X-Voxbench-Voice": _describe(params),
                **extra_headers,
            }
        )
        pacer = _Pacer(knobs, started)
        first_bytes = wav_header(OUTPUT_RATE) if response_format == "wav" else b""

        async def write(payload: bytes) -> None:
            if sse and hosted:
                data = json.dumps({"audio_data": base64.b64encode(payload).decode()})
                await response.write(f"event: speech.audio.delta\ndata: {data}\n\n".encode())
            elif sse:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(payload).decode()}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            else:
                await response.write(payload)

        self._active_streams += 1
        samples_sent = 0
        try:
            if knobs.header_first:
                await response.prepare(request)
                if first_bytes:
                    await write(first_bytes)
                    first_bytes = b""
            async for chunk in audio_stream(self.engine, text, params, knobs):
                await pacer.before(1000 * len(chunk) / OUTPUT_RATE)
                if not response.prepared:
                    await response.prepare(request)
                encoded = (
                    (chunk / 32768.0).astype("<f4") if hosted and response_format == "pcm" else chunk.astype("<i2")
                )
                await write(first_bytes + encoded.tobytes())
                first_bytes = b""
                samples_sent += len(chunk)
            if not response.prepared:
                await response.prepare(request)
            usage = {"input_characters": len(text), "output_samples": samples_sent}
            if sse and hosted:
                await response.write(f"event: speech.audio.done\ndata: {json.dumps({'usage': usage})}\n\n".encode())
            elif sse:
                done = {"type": "speech.audio.done", "usage": usage}
                await response.write(f"data: {json.dumps(done)}\n\n".encode())
            await response.write_eof()
        except EngineError as error:
            log.error("engine failed: %s", error)
            if not response.prepared:
                raise RequestError(f"the engine failed: {error}", status=500, code="engine_error") from None
            # Mid-stream there is no status to change: cut the stream so the client sees it.
            request.transport and request.transport.close()
        except ConnectionResetError:
            log.info("client went away after %d samples", samples_sent)
        finally:
            self._active_streams -= 1
        return response

    # -- OpenAI face --------------------------------------------------------------------------
    async def openai_speech(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("'input' must be a non-empty string", "input")
        if len(text) > MAX_INPUT_CHARS:
            raise RequestError(f"'input' is {len(text)} characters; the limit is {MAX_INPUT_CHARS}", "input")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("'model' is required", "model")
        if model != self.model:
            raise RequestError(
                f"the model '{model}' does not exist; this server serves '{self.model}'",
                "model",
                status=404,
                code="model_not_found",
            )
        response_format = body.get("response_format", "pcm")
        if response_format in UNSUPPORTED_FORMATS:
            raise RequestError(
                f"response_format '{response_format}' is not served by this stand-in; use pcm or wav", "response_format"
            )
        if response_format not in RESPONSE_FORMATS:
            raise RequestError(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}", "response_format")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise RequestError("'stream' must be a boolean", "stream")
        stream_format = body.get("stream_format")
        if stream_format is not None and stream_format not in STREAM_FORMATS:
            raise RequestError(f"'stream_format' must be one of {', '.join(STREAM_FORMATS)}", "stream_format")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
            raise RequestError("'speed' must be a number from 0.25 to 4.0", "speed")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RequestError("'seed' must be an integer", "seed")
        reference = decode_reference(body["ref_audio"], "ref_audio") if body.get("ref_audio") is not None else None
        self._speech_requests = getattr(self, "_speech_requests", 0) + 1
        if self.knobs.die_after_requests and self._speech_requests >= self.knobs.die_after_requests:
            log.error("RuntimeError: CUDA error: an illegal memory access was encountered (engine died)")
            logging.shutdown()
            os._exit(71)
        if reference is not None and self.knobs.clone_crash:
            # What the manual run saw: the open weights lack the audio encoder; ref_audio raises
            # inside the engine and takes the server down (a container restart was needed).
            log.error(
                'Traceback (most recent call last):\n  File "voxtral_tts/audio_encoder.py", line 88, in encode\n'
                "ValueError: ref_audio needs the audio encoder, whose weights are not in this checkpoint"
            )
            logging.shutdown()
            os._exit(70)
        self._require_ready()
        if self.knobs.nvrtc_error and not getattr(self, "_nvrtc_logged", False):
            self._nvrtc_logged = True
            log.error(NVRTC_TRACEBACK)
        params = self._voice_params(body.get("voice", self.engine.presets()[0]), reference, "voice", float(speed))
        # vLLM-Omni streams SSE when asked to stream without naming a format.
        sse = stream_format == "sse" or (stream and stream_format is None)
        content_type = "audio/wav" if response_format == "wav" else "audio/pcm"
        return await self._send(
            request, params, text, content_type, response_format, sse, {"X-Sample-Rate": str(OUTPUT_RATE)}
        )

    # -- Mistral's hosted face (for the optional prescreen) ---------------------------------
    async def hosted_speech(self, request: web.Request) -> web.StreamResponse:
        if self._token is not None and request.headers.get("Authorization") != f"Bearer {self._token}":
            raise RequestError("missing or wrong API key (Authorization: Bearer ...)", status=401, code="unauthorized")
        body = await _json_body(request)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("'input' must be a non-empty string", "input")
        if body.get("model") != self.model:
            raise RequestError(f"unknown model {body.get('model')!r}; this server serves '{self.model}'", "model", 404)
        response_format = body.get("response_format", "mp3")
        if response_format not in RESPONSE_FORMATS:
            raise RequestError("this stand-in serves response_format pcm (float32) or wav", "response_format")
        reference = decode_reference(body["ref_audio"], "ref_audio") if body.get("ref_audio") else None
        self._require_ready()
        params = self._voice_params(body.get("voice_id", self.engine.presets()[0]), reference, "voice_id", 1.0)
        if body.get("stream"):
            return await self._send(request, params, text, "audio/pcm", response_format, True, {}, hosted=True)
        pieces = [chunk async for chunk in audio_stream(self.engine, text, params, dataclasses.replace(self.knobs))]
        samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        if response_format == "pcm":
            payload = (samples / 32768.0).astype("<f4").tobytes()
        else:
            payload = wav_header(OUTPUT_RATE, 2 * len(samples)) + samples.astype("<i2").tobytes()
        return web.json_response({"audio_data": base64.b64encode(payload).decode()})

    # -- Chatterbox face ----------------------------------------------------------------------
    async def chatterbox_tts(self, request: web.Request) -> web.StreamResponse:
        if self._token is not None and request.headers.get(TOKEN_HEADER) != self._token:
            raise RequestError(f"missing or wrong {TOKEN_HEADER} header", status=401, code="unauthorized")
        body = await _json_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("'text' must be a non-empty string", "text")
        reference = decode_reference(body["audio_prompt"], "audio_prompt") if body.get("audio_prompt") else None
        self._require_ready()
        params = self._voice_params(body.get("voice", self.engine.presets()[0]), reference, "voice", 1.0)
        return await self._send(
            request, params, text, "application/octet-stream", "pcm", False, {"X-Sample-Rate": str(OUTPUT_RATE)}
        )


def _describe(params: VoiceParams) -> str:
    pitch = "" if params.pitch is None else f" pitch={params.pitch:g}"
    return f"{params.voice}{pitch} speed={params.speed:g}{' cloned' if params.cloned else ''}"


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


@web.middleware
async def _stamp_arrival(request: web.Request, handler):  # type: ignore[no-untyped-def]
    request["started"] = time.monotonic()
    return await handler(request)


def build_app(
    engine: SpeechEngine,
    api: str = "openai",
    knobs: Knobs | None = None,
    model: str = "voxbench-standin",
    token: str | None = None,
    admin: bool = False,
    hf_token_present: bool = False,
) -> web.Application:
    server = TtsServer(engine, api, knobs or Knobs(), model, token, admin, hf_token_present)
    app = server.app()
    app["server"] = server
    return app


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as error:
        raise SystemExit(f"cannot read the {what} file {path}: {error.strerror}") from None
    if not value:
        raise SystemExit(f"the {what} file {path} is empty")
    return value


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="voxbench-standin-tts", description=__doc__.split("\n\n")[0])
    cli.add_argument("--engine", default="espeak-ng", choices=("espeak-ng", "flite", "festival"))
    cli.add_argument(
        "--api",
        default="openai",
        choices=("openai", "chatterbox", "mistral-hosted"),
        help="openai: vLLM-Omni's API; chatterbox: the incumbent's; mistral-hosted: Mistral's hosted speech API",
    )
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8091)
    cli.add_argument(
        "--model",
        default="mistralai/Voxtral-4B-TTS-2603",
        help="model name the OpenAI face answers to (others get 404)",
    )
    cli.add_argument(
        "--token-file", help="chatterbox: the token clients must send; mistral-hosted: the API key (Bearer)"
    )
    cli.add_argument("--admin", action="store_true", help="serve GET/POST /admin/knobs to change knobs live")
    cli.add_argument("--engine-version", default=STANDIN_VERSION, help="the vLLM-Omni version to answer as")
    cli.add_argument("--print-version", action="store_true", help="print the engine version and exit")
    cli.add_argument("--stage-configs-path", help="vLLM-Omni >= 0.18: the stage config (YAML in JSON syntax)")
    cli.add_argument("--stage-config", help="vLLM-Omni < 0.18: the stage config (same file, older flag)")
    for field in dataclasses.fields(Knobs):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            cli.add_argument(flag, action="store_true")
        else:
            cli.add_argument(flag, type=float, default=field.default)
    return cli


def _stage_config(cli: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, object]:
    """As vLLM-Omni: the stage-config flag's name depends on the release, and a flag meant for
    another release is refused at start; the file's ``gpu_memory_utilization`` is what loads."""
    version = args.engine_version
    new_flags = tuple(int(part) for part in version.split(".")[:2]) >= (0, 18)
    if new_flags and args.stage_config:
        cli.error(f"unrecognized arguments: --stage-config (vLLM-Omni {version} takes --stage-configs-path)")
    if not new_flags and args.stage_configs_path:
        cli.error(f"unrecognized arguments: --stage-configs-path (vLLM-Omni {version} takes --stage-config)")
    path = args.stage_configs_path or args.stage_config
    info: dict[str, object] = {
        "version": version,
        "gpu_memory_utilization": BUILTIN_GPU_MEMORY_UTILIZATION,
        "stage_config": path or "built-in",
    }
    if path:
        try:
            stages = json.loads(Path(path).read_text())["stage_args"]
            info["gpu_memory_utilization"] = float(stages[0]["engine_args"]["gpu_memory_utilization"])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
            cli.error(f"cannot load the stage config {path}: {error}")
    return info


def main(argv: list[str] | None = None) -> None:
    cli = parser()
    args = cli.parse_args(argv)
    if args.print_version:
        print(args.engine_version)
        return
    engine_info = _stage_config(cli, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    knobs = Knobs(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Knobs)})
    token = _read_secret(args.token_file, "token") if args.token_file else None
    # The candidate gets its Hugging Face token as a mounted file; only its presence is reported.
    hf_token_path = os.environ.get("HF_TOKEN_PATH")
    hf_token_present = bool(hf_token_path) and bool(_read_secret(hf_token_path, "HF token"))
    app = build_app(make_engine(args.engine), args.api, knobs, args.model, token, args.admin, hf_token_present)
    app["server"].engine_info = engine_info
    # Bind before starting: a taken port must end the process at once, as real servers do
    # (aiohttp binds after startup and would wait on the calibration task first).
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as error:
        raise SystemExit(f"cannot listen on {args.host}:{args.port}: {error.strerror} [Errno {error.errno}]") from None
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
