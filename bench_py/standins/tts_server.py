"""Stand-in streaming TTS server over real engines.

Three faces of one program, each speaking a real API:

* ``vllm-omni`` — the candidate, as vLLM-Omni serves Voxtral, following the rules of a pinned
  vLLM-Omni release read from its own wheel (:mod:`bench_py.standins.vllm_omni_face`);
* ``chatterbox`` — the incumbent's production API on another machine, as published
  (:mod:`bench_py.standins.chatterbox_face`);
* ``mistral-hosted`` — Mistral's hosted speech API, for the optional prescreen
  (:mod:`bench_py.standins.hosted_face`).

Audio comes from a real engine (espeak-ng, flite, festival), is resampled to 24 kHz and leaves
as it is produced. Test knobs (delays, stalls, leading silence, chunk size, noise) are set on
the command line or, with ``--admin``, at ``POST /admin/knobs``. Every response names the
stand-in in ``X-Voxbench-Standin``: a stand-in never pretends to be the engine it plays, and a
production run refuses anything that says so.
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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler

from bench_py.audio import OUTPUT_RATE, AudioFormatError, Pcm, StreamResampler, decode_wav
from bench_py.standins.engines import SpeechEngine, VoiceParams, make_engine

log = logging.getLogger("voxbench.standin.tts")

STANDIN_HEADER = "X-Voxbench-Standin"
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
    header_first: bool = False  # send headers at once, before the delay
    leading_silence_ms: float = 0.0  # digital silence before the speech
    chunk_ms: float = 40.0  # audio per network write
    chunk_interval_ms: float = 0.0  # pause between writes (pacing)
    stall_after_ms: float = 0.0  # after this much audio has been sent ...
    stall_ms: float = 0.0  # ... pause once for this long (a mid-stream stall)
    noise: bool = False  # send white noise of the speech's length instead of speech
    encoder_weights: bool = False  # vllm-omni: the full checkpoint, which can clone (the open weights cannot)
    streams_wav: bool = False  # vllm-omni: a model whose output carries its rate (not Voxtral): WAV streams work
    nvrtc_error: bool = False  # log an NVRTC kernel-compilation traceback (as on GB10) and carry on
    startup_delay_ms: float = 0.0  # the port accepts nothing this long after calibration (slow model load)
    die_after_requests: float = 0.0  # the process exits on this speech request (0: never): dies in warmup
    refuse_model: bool = False  # exit at start saying the model's architecture is not supported

    def update(self, changes: dict[str, object]) -> None:
        names = {f.name: f.type for f in dataclasses.fields(self)}
        checked: dict[str, bool | float] = {}  # every change is checked before any is made
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown knob {key!r}; knobs are: {', '.join(names)}")
            if isinstance(value, bool) != (names[key] in ("bool", bool)) or not isinstance(value, (int, float)):
                raise ValueError(f"knob {key!r} must be a {'boolean' if names[key] in ('bool', bool) else 'number'}")
            if not isinstance(value, bool) and value < 0:
                raise ValueError(f"knob {key!r} must not be negative")
            checked[key] = value if isinstance(value, bool) else float(value)
        for key, checked_value in checked.items():
            setattr(self, key, checked_value)
        self.chunk_ms = max(self.chunk_ms, 1.0)


class HttpError(Exception):
    """An error answered with a JSON body the face chose (each real API has its own shape)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(json.dumps(body))
        self.status, self.body = status, body

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


def decode_wav_payload(raw: bytes, what: str, fail: Callable[[str], Exception]) -> Pcm:
    try:
        pcm = decode_wav(raw)
    except AudioFormatError as error:
        raise fail(f"{what} is not a PCM WAV file: {error}") from None
    if pcm.duration_s < 1.0:
        raise fail(f"{what} is {pcm.duration_s:.2f} s long; give at least 1 s of speech")
    return pcm


def decode_base64_wav(value: object, what: str, fail: Callable[[str], Exception]) -> Pcm:
    """A ``data:`` URL (or bare base64) holding a WAV clip."""
    if not isinstance(value, str) or not value:
        raise fail(f"{what} must be a base64 data: URL of a WAV file")
    payload = value
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if ";base64" not in header:
            raise fail(f"{what} must be base64-encoded (data:audio/wav;base64,...)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise fail(f"{what} is not valid base64") from None
    return decode_wav_payload(raw, what, fail)


async def audio_stream(
    engine: SpeechEngine, text: str, params: VoiceParams, knobs: Knobs, rate: int = OUTPUT_RATE
) -> AsyncIterator[np.ndarray]:
    """Engine audio at ``rate`` in chunks of ``knobs.chunk_ms``, with silence and noise knobs applied."""
    chunk = max(1, int(rate * knobs.chunk_ms / 1000))
    pending = np.zeros(int(rate * knobs.leading_silence_ms / 1000), np.int16)
    noise = np.random.default_rng(0) if knobs.noise else None
    resampler: StreamResampler | None = None
    engine_rate = None

    def shaped(samples: np.ndarray) -> np.ndarray:
        if noise is None:
            return samples
        return np.clip(noise.normal(0, 3000, len(samples)), -32768, 32767).astype(np.int16)

    async for piece in engine.stream(text, params):
        if resampler is None or piece.rate != engine_rate:
            flushed = resampler.flush() if resampler else np.zeros(0, np.int16)
            resampler, engine_rate = StreamResampler(piece.rate, rate), piece.rate
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


class Pacer:
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


def describe(params: VoiceParams) -> str:
    pitch = "" if params.pitch is None else f" pitch={params.pitch:g}"
    return f"{params.voice}{pitch} speed={params.speed:g}{' cloned' if params.cloned else ''}"


async def json_body(request: web.Request, fail: Callable[[str], Exception]) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise fail("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise fail("the request body must be a JSON object")
    return body


def die(code: int, *lines: str) -> NoReturn:
    """End the process the way a crashing engine does: its last words in the log, then gone."""
    for line in lines:
        log.error(line)
    logging.shutdown()
    os._exit(code)


class Face:
    """What every face shares: an engine, knobs, health, the stand-in label, a log of requests."""

    api = "face"

    def __init__(self, engine: SpeechEngine, knobs: Knobs, admin: bool = False) -> None:
        self.engine, self.knobs, self.admin = engine, knobs, admin
        self.active_streams = 0
        self.speech_requests = 0
        self.calibrate = True  # measure the engine's voices first, for conditioning on a reference

    @property
    def label(self) -> str:
        return f"tts-server/{self.api}/{self.engine.name}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[_stamp_arrival, self._labelled])
        self.routes(app)
        if self.admin:
            app.router.add_get("/admin/knobs", self.get_knobs)
            app.router.add_post("/admin/knobs", self.set_knobs)
        app["face"] = self
        return app

    @web.middleware
    async def _labelled(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except HttpError as error:
            response = error.response()
        if not response.prepared:
            response.headers[STANDIN_HEADER] = self.label
        return response

    def record_request(self, request: web.Request, raw: bytes) -> None:
        """Every speech request as it arrived, one JSON line in the log (reference audio shortened):
        what the conformance suite checks voxbench's requests against."""
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {"unparsed_bytes": len(raw)}
        if isinstance(body, dict):
            body = {
                k: (f"<{len(v)} characters>" if isinstance(v, str) and len(v) > 200 else v) for k, v in body.items()
            }
        log.info("voxbench-standin request %s", json.dumps({"path": request.path, "body": body}, sort_keys=True))

    def count_speech_request(self) -> None:
        self.speech_requests += 1
        if self.knobs.die_after_requests and self.speech_requests >= self.knobs.die_after_requests:
            die(71, "RuntimeError: CUDA error: an illegal memory access was encountered (engine died)")

    async def get_knobs(self, _request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(self.knobs))

    async def set_knobs(self, request: web.Request) -> web.Response:
        body = await json_body(request, lambda m: HttpError(400, {"error": m}))
        try:
            self.knobs.update(body)
        except ValueError as error:
            raise HttpError(400, {"error": str(error)}) from None
        return web.json_response(dataclasses.asdict(self.knobs))

    async def stream_pcm(
        self,
        request: web.Request,
        response: web.StreamResponse,
        text: str,
        params: VoiceParams,
        encode: Callable[[np.ndarray], bytes],
        first: bytes = b"",
        rate: int = OUTPUT_RATE,
    ) -> int:
        """Write synthesized audio as it is produced (nothing is buffered beyond one chunk);
        returns the samples sent. ``first`` goes out before the first audio (a WAV header)."""
        knobs = dataclasses.replace(self.knobs)  # a request sees one consistent set of knobs
        pacer = Pacer(knobs, request["started"])
        sent = 0
        self.active_streams += 1
        try:
            if knobs.header_first and not response.prepared:
                await response.prepare(request)
                if first:
                    await response.write(first)
                    first = b""
            async for chunk in audio_stream(self.engine, text, params, knobs, rate):
                await pacer.before(1000 * len(chunk) / rate)
                if not response.prepared:
                    await response.prepare(request)
                await response.write(first + encode(chunk))
                first = b""
                sent += len(chunk)
        finally:
            self.active_streams -= 1
        return sent

    async def synthesize(self, text: str, params: VoiceParams, rate: int = OUTPUT_RATE) -> np.ndarray:
        """The whole utterance (for APIs that answer with one body)."""
        pieces = [c async for c in audio_stream(self.engine, text, params, dataclasses.replace(self.knobs), rate)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)

    async def prepare(self) -> None:
        """Before the port accepts connections (a real engine loads its model first)."""
        if self.knobs.refuse_model:
            # What vLLM prints for an architecture it has no implementation of, then exits.
            die(
                1,
                "ValueError: Model architectures ['VoxtralTTSForConditionalGeneration'] are not supported for now. "
                "Supported architectures: ['LlamaForCausalLM', 'Qwen2ForCausalLM']",
            )
        started = time.monotonic()
        try:
            if self.calibrate:
                await self.engine.prepare()
        except Exception as error:  # a model that cannot load ends the server, as real engines do
            die(1, f"the {self.engine.name} engine could not start: {type(error).__name__}: {error}")
        await asyncio.sleep(self.knobs.startup_delay_ms / 1000)
        log.info("%s ready after %.1f s of calibration", self.engine.name, time.monotonic() - started)


@web.middleware
async def _stamp_arrival(request: web.Request, handler: Handler) -> web.StreamResponse:
    request["started"] = time.monotonic()
    return await handler(request)


def read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as error:
        raise SystemExit(f"cannot read the {what} file {path}: {error.strerror}") from None
    if not value:
        raise SystemExit(f"the {what} file {path} is empty")
    return value


def add_knob_flags(cli: argparse.ArgumentParser) -> None:
    for field in dataclasses.fields(Knobs):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            cli.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
        else:
            cli.add_argument(flag, type=float, default=field.default, help=argparse.SUPPRESS)


def knobs_from(args: argparse.Namespace) -> Knobs:
    return Knobs(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Knobs)})


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="voxbench-standin-tts", description=__doc__.split("\n\n")[0])
    cli.add_argument("--engine", default="espeak-ng", choices=("espeak-ng", "flite", "festival"))
    cli.add_argument(
        "--api",
        default="vllm-omni",
        choices=("vllm-omni", "chatterbox", "mistral-hosted"),
        help="vllm-omni: the candidate's server; chatterbox: the incumbent's API; mistral-hosted: Mistral's hosted API",
    )
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8091)
    cli.add_argument("--admin", action="store_true", help="serve GET/POST /admin/knobs to change knobs live")
    cli.add_argument("--token-file", help="chatterbox: the token clients must send; mistral-hosted: the API key")
    cli.add_argument("--model", default="mistralai/Voxtral-4B-TTS-2603", help="the model name served")
    # vllm-omni face
    cli.add_argument("--upstream", help="vllm-omni: the release's wheel (or its unpacked files) to take rules from")
    # chatterbox face
    cli.add_argument("--sample-rate", type=int, default=OUTPUT_RATE, help="chatterbox: the rate of the PCM it answers")
    cli.add_argument(
        "--delivery", choices=("whole", "streamed"), default="whole", help="chatterbox: one body or a stream"
    )
    cli.add_argument("--references-dir", help="chatterbox: where reference_audio paths are resolved")
    add_knob_flags(cli)
    return cli


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound at once (a taken port ends the process, as real servers do), listening only later."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {error.strerror} [Errno {error.errno}]") from None
    return sock


def serve(face: Face, host: str, port: int) -> None:
    """Bind, load (connections are refused meanwhile, as vLLM's are), then listen and serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sock = listening_socket(host, port)
    asyncio.run(face.prepare())
    sock.listen(128)
    web.run_app(face.app(), sock=sock, print=None, access_log=None)


def make_face(args: argparse.Namespace, knobs: Knobs) -> Face:
    engine = make_engine(args.engine)
    if args.api == "chatterbox":
        from bench_py.standins.chatterbox_face import ChatterboxFace

        token = read_secret(args.token_file, "token") if args.token_file else None
        return ChatterboxFace(engine, knobs, token, args.sample_rate, args.delivery, args.references_dir, args.admin)
    if args.api == "mistral-hosted":
        from bench_py.standins.hosted_face import HostedFace

        token = read_secret(args.token_file, "API key") if args.token_file else None
        return HostedFace(engine, knobs, args.model, token, args.admin)
    from bench_py.standins.vllm_omni_face import VllmOmniFace, rules_from

    if not args.upstream:
        raise SystemExit("the vllm-omni face takes its rules from a vLLM-Omni release: pass --upstream WHEEL")
    return VllmOmniFace(engine, knobs, rules_from(args.upstream), args.model, admin=args.admin)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    serve(make_face(args, knobs_from(args)), args.host, args.port)


if __name__ == "__main__":
    main()
