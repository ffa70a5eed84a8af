"""Real speech engines behind the stand-in TTS server: espeak-ng, flite and festival.

Each engine streams int16 audio at its native rate as it is produced: espeak-ng from its
stdout pipe as it writes, flite and festival one sentence at a time (they cannot stream
within a sentence). Text goes to the engines through stdin or a file, never argv, so no
input can be read as an option.

Conditioning on a reference clip stands in for voice cloning: the engine picks the voice
variant and pitch that best match the reference's pitch register and formants.
Those (pitch and formants) are the features it manipulates; tests judge the result with an independent speaker
embedding, never with these features.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from bench_py import audio
from bench_py.audio import IncompleteWavHeader, Pcm, decode_wav, median_f0, median_formants, parse_wav_header
from bench_py.files import atomic_write_json

#: A sentence long enough for stable pitch and formant estimates.
CALIBRATION_TEXT = "The quick brown fox jumps over the lazy dog, while the evening sun sets slowly behind the hills."
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


class EngineError(RuntimeError):
    """The engine process failed; the message carries its stderr."""


@dataclass(frozen=True)
class VoiceParams:
    """Everything an engine needs to render one voice."""

    voice: str
    pitch: float | None = None  # espeak-ng: -p 0..99; flite: target mean F0 in Hz
    speed: float = 1.0
    cloned: bool = False
    reasons: tuple[str, ...] = field(default=(), compare=False)

    def with_speed(self, speed: float) -> VoiceParams:
        return VoiceParams(self.voice, self.pitch, speed, self.cloned, self.reasons)


class SpeechEngine(Protocol):
    name: str

    def presets(self) -> Sequence[str]: ...

    def preset(self, name: str) -> VoiceParams: ...

    async def prepare(self) -> None:
        """Measure what conditioning needs (runs once, before the server reports ready)."""

    def condition(self, reference: Pcm) -> VoiceParams: ...

    def stream(self, text: str, params: VoiceParams) -> AsyncIterator[Pcm]: ...


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


async def _run_collect(argv: Sequence[str], stdin: bytes = b"") -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate(stdin)
    if process.returncode != 0:
        raise EngineError(f"{argv[0]} exited {process.returncode}: {stderr.decode(errors='replace').strip()}")
    return stdout


@dataclass
class _Calibration:
    """Measured pitch curve and formants of one voice variant."""

    voice: str
    settings: list[float]
    f0s: list[float]
    natural_f0: float  # F0 at the engine's default setting: the voice's own register
    formants: np.ndarray  # F1..F3 in Hz at that setting: the voice's vocal tract

    @classmethod
    def measured(cls, voice: str, points: Sequence[tuple[float, float | None]], natural: Pcm) -> _Calibration | None:
        """Build from (setting, measured F0) points, dropping octave errors of the estimator."""
        natural_f0, formants = median_f0(natural), median_formants(natural)
        found = [(s, f) for s, f in points if f is not None]
        if natural_f0 is None or formants is None or not found:
            return None
        middle = float(np.median([f for _, f in found]))
        kept = [(s, f) for s, f in found if 0.6 < f / middle < 1.6]
        if len(kept) == 1:  # a voice whose pitch cannot be moved: a degenerate range
            kept.append((kept[0][0], kept[0][1] * 1.0001))
        return cls(voice, [s for s, _ in kept], [f for _, f in kept], natural_f0, formants)

    def setting_for(self, target_f0: float) -> float:
        # The engine's pitch setting moves F0 monotonically; interpolate in log-F0.
        order = np.argsort(self.f0s)
        logs = np.log(np.asarray(self.f0s)[order])
        return float(np.interp(math.log(target_f0), logs, np.asarray(self.settings)[order]))


#: A folder where calibrations are kept between starts, when set. The stand-in images set it and
#: calibrate when they are built, so an engine in a container starts without ~3 s of synthesis and
#: pitch tracking; the figures are the same (the engines are deterministic), keyed by everything
#: they come from: the engine's binary and version, its voices and settings, this code.
CALIBRATION_DIR_ENV = "VOXBENCH_STANDIN_CALIBRATION_DIR"


def _calibration_file(engine: str, binary: str, inputs: Sequence[object]) -> Path | None:
    folder = os.environ.get(CALIBRATION_DIR_ENV)
    if not folder:
        return None
    said = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    key = hashlib.sha256(
        json.dumps([engine, (said.stdout + said.stderr).strip(), list(inputs), CALIBRATION_TEXT]).encode()
    )
    for source in (audio.__file__, __file__):  # the measuring code itself
        key.update(Path(source or "").read_bytes())
    return Path(folder) / f"{engine}-{key.hexdigest()[:16]}.json"


def _load_calibrations(path: Path | None) -> list[_Calibration] | None:
    if path is None or not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
        return [_Calibration(**{**row, "formants": np.asarray(row["formants"], dtype=float)}) for row in rows]
    except (OSError, ValueError, TypeError, KeyError):
        return None  # unreadable: measured again


def _save_calibrations(path: Path | None, calibrations: list[_Calibration]) -> None:
    if path is None or not calibrations:
        return
    rows = [{**vars(c), "formants": [float(f) for f in c.formants]} for c in calibrations]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, rows)
    except OSError:
        pass  # a read-only or full folder: the next start measures again


#: Speaking F0 that separates the low (typically male) from the high (typically female) register.
REGISTER_SPLIT_HZ = 160.0


def _choose(calibrations: Sequence[_Calibration], reference: Pcm, default: VoiceParams) -> VoiceParams:
    """Pick a variant of the reference's register, then the nearest formants and pitch range."""
    ref_f0, ref_formants = median_f0(reference), median_formants(reference)
    if ref_f0 is None or ref_formants is None:
        return VoiceParams(default.voice, default.pitch, cloned=True, reasons=("reference has no voiced frames",))
    high = ref_f0 >= REGISTER_SPLIT_HZ
    same_register = [c for c in calibrations if (c.natural_f0 >= REGISTER_SPLIT_HZ) == high]

    def cost(cal: _Calibration) -> float:
        lo, hi = min(cal.f0s), max(cal.f0s)
        # Distance (in octaves) the variant would have to stretch beyond its range.
        stretch = max(0.0, math.log2(lo / ref_f0), math.log2(ref_f0 / hi))
        # RMS distance of log formant frequencies: 0.1 is about a 10% longer or shorter vocal tract.
        return float(np.sqrt(np.mean(np.log(cal.formants / ref_formants) ** 2))) + 1.0 * stretch

    best = min(same_register or calibrations, key=cost)
    register = "high" if high else "low"
    reason = f"reference F0 {ref_f0:.0f} Hz ({register} register); {best.voice} nearest in formants and pitch range"
    return VoiceParams(best.voice, round(best.setting_for(ref_f0), 1), cloned=True, reasons=(reason,))


class EspeakEngine:
    """espeak-ng, streamed from its stdout as it synthesizes (22.05 kHz)."""

    name = "espeak-ng"
    _PRESETS = ("en-us", "en-us+f1", "en-us+f3", "en-us+f4", "en-us+m3", "en-us+m7")
    _CLONE_VARIANTS = ("en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en-us+f5", "en-us+m1", "en-us+m3", "en-us+m7")
    _PITCH_GRID = (10.0, 30.0, 50.0, 70.0, 90.0)
    _WORDS_PER_MINUTE = 175

    def __init__(self, binary: str = "espeak-ng", read_size: int = 2048) -> None:
        self._binary = binary
        self._read_size = read_size
        self._calibrations: list[_Calibration] = []

    def presets(self) -> Sequence[str]:
        return self._PRESETS

    def preset(self, name: str) -> VoiceParams:
        return VoiceParams(name, 50.0)

    def _argv(self, params: VoiceParams) -> list[str]:
        pitch = 50 if params.pitch is None else round(min(99.0, max(0.0, params.pitch)))
        speed = round(self._WORDS_PER_MINUTE * params.speed)
        return [self._binary, "--stdout", "-v", params.voice, "-p", str(pitch), "-s", str(speed)]

    async def prepare(self) -> None:
        if self._calibrations:
            return
        kept = _calibration_file(
            self.name, self._binary, [self._CLONE_VARIANTS, self._PITCH_GRID, self._WORDS_PER_MINUTE]
        )
        self._calibrations = _load_calibrations(kept) or []
        if self._calibrations:
            return
        for variant in self._CLONE_VARIANTS:
            points, natural = [], None
            for setting in self._PITCH_GRID:
                params = VoiceParams(variant, setting)
                pcm = decode_wav(await _run_collect(self._argv(params), CALIBRATION_TEXT.encode()))
                points.append((setting, median_f0(pcm)))
                natural = pcm if setting == 50.0 else natural
            calibration = _Calibration.measured(variant, points, natural) if natural else None
            if calibration:
                self._calibrations.append(calibration)
        _save_calibrations(kept, self._calibrations)

    def condition(self, reference: Pcm) -> VoiceParams:
        if not self._calibrations:
            raise EngineError("espeak-ng was not calibrated: call prepare() before conditioning")
        return _choose(self._calibrations, reference, self.preset(self._PRESETS[0]))

    async def stream(self, text: str, params: VoiceParams) -> AsyncIterator[Pcm]:
        process = await asyncio.create_subprocess_exec(
            *self._argv(params),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin and process.stdout and process.stderr
        process.stdin.write(text.encode())
        process.stdin.close()
        try:
            header = b""
            rate = offset = None
            leftover = b""
            while True:
                block = await process.stdout.read(self._read_size)
                if not block:
                    break
                if rate is None:
                    header += block
                    try:
                        rate, _, _, offset = parse_wav_header(header)
                    except IncompleteWavHeader:
                        if len(header) < 1024:
                            continue
                        raise
                    block = header[offset:]
                data = leftover + block
                usable = len(data) // 2 * 2
                leftover = data[usable:]
                if usable:
                    yield Pcm(np.frombuffer(data[:usable], "<i2").copy(), rate)
            if await process.wait() != 0:
                raise EngineError(f"espeak-ng exited {process.returncode}: {(await process.stderr.read()).decode()}")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


class _SentenceEngine:
    """Engines that render a whole sentence to a WAV file before anything can be sent."""

    name = "sentence-engine"

    async def _render(self, sentence: str, params: VoiceParams, workdir: str) -> Pcm:
        raise NotImplementedError

    async def stream(self, text: str, params: VoiceParams) -> AsyncIterator[Pcm]:
        with tempfile.TemporaryDirectory(prefix="voxbench-tts-") as workdir:
            for sentence in split_sentences(text) or [text]:
                yield await self._render(sentence, params, workdir)


class FliteEngine(_SentenceEngine):
    """flite, one sentence at a time. ``slt`` is left out: the default reference is slt."""

    name = "flite"
    _PRESETS = ("kal16", "awb", "rms", "kal")
    # Voices whose F0 follows int_f0_target_mean (rms ignores it, measured).
    _PITCHABLE = ("awb", "kal16")

    def __init__(self, binary: str = "flite", voices: Sequence[str] | None = None) -> None:
        self._binary = binary
        self._voices = tuple(voices or self._PRESETS)
        self._calibrations: list[_Calibration] = []

    def presets(self) -> Sequence[str]:
        return self._voices

    def preset(self, name: str) -> VoiceParams:
        return VoiceParams(name, None)

    async def _render(self, sentence: str, params: VoiceParams, workdir: str) -> Pcm:
        text_path = os.path.join(workdir, "sentence.txt")
        wav_path = os.path.join(workdir, "sentence.wav")
        with open(text_path, "w", encoding="utf-8") as handle:
            handle.write(sentence)
        argv = [self._binary, "-voice", params.voice, "-f", text_path, "-o", wav_path]
        if params.pitch is not None:
            argv += ["--setf", f"int_f0_target_mean={params.pitch:.1f}"]
        if params.speed != 1.0:
            argv += ["--setf", f"duration_stretch={1.0 / params.speed:.3f}"]
        await _run_collect(argv)
        with open(wav_path, "rb") as handle:
            return decode_wav(handle.read())

    async def prepare(self) -> None:
        if self._calibrations:
            return
        kept = _calibration_file(self.name, self._binary, [self._voices, self._PITCHABLE])
        self._calibrations = _load_calibrations(kept) or []
        if self._calibrations:
            return
        with tempfile.TemporaryDirectory(prefix="voxbench-cal-") as workdir:
            for voice in self._voices:
                natural = await self._render(CALIBRATION_TEXT, VoiceParams(voice, None), workdir)
                points = [(0.0, median_f0(natural))]
                if voice in self._PITCHABLE:
                    for target in (90.0, 140.0, 200.0, 260.0):
                        shifted = await self._render(CALIBRATION_TEXT, VoiceParams(voice, target), workdir)
                        points.append((target, median_f0(shifted)))
                    points = points[1:]
                calibration = _Calibration.measured(voice, points, natural)
                if calibration:
                    self._calibrations.append(calibration)
        _save_calibrations(kept, self._calibrations)

    def condition(self, reference: Pcm) -> VoiceParams:
        if not self._calibrations:
            raise EngineError("flite was not calibrated: call prepare() before conditioning")
        params = _choose(self._calibrations, reference, self.preset(self._voices[0]))
        if params.voice not in self._PITCHABLE:
            return VoiceParams(params.voice, None, cloned=True, reasons=params.reasons)
        return params


class FestivalEngine(_SentenceEngine):
    """festival's text2wave, one sentence at a time, with an installed festvox voice."""

    name = "festival"

    def __init__(self, binary: str = "text2wave", voices: Sequence[str] = ("cmu_us_slt_arctic_hts",)) -> None:
        self._binary = binary
        self._voices = tuple(voices)

    def presets(self) -> Sequence[str]:
        return self._voices

    def preset(self, name: str) -> VoiceParams:
        return VoiceParams(name, None)

    async def prepare(self) -> None:
        return None

    def condition(self, reference: Pcm) -> VoiceParams:
        # festival has one voice here: conditioning cannot change it, and says so.
        return VoiceParams(self._voices[0], None, cloned=True, reasons=("festival has a single voice installed",))

    async def _render(self, sentence: str, params: VoiceParams, workdir: str) -> Pcm:
        if not re.fullmatch(r"[A-Za-z0-9_]+", params.voice):
            raise EngineError(f"not a festival voice name: {params.voice!r}")
        text_path = os.path.join(workdir, "sentence.txt")
        wav_path = os.path.join(workdir, "sentence.wav")
        with open(text_path, "w", encoding="utf-8") as handle:
            handle.write(sentence)
        await _run_collect([self._binary, "-eval", f"(voice_{params.voice})", "-o", wav_path, text_path])
        with open(wav_path, "rb") as handle:
            return decode_wav(handle.read())


ENGINES: dict[str, Callable[[], SpeechEngine]] = {
    "espeak-ng": EspeakEngine,
    "flite": FliteEngine,
    "festival": FestivalEngine,
}


def make_engine(name: str) -> SpeechEngine:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}") from None


def calibrate_kept() -> None:
    """Calibrate every engine that calibrates into the folder :data:`CALIBRATION_DIR_ENV` names
    (the stand-in images run this when they are built)."""
    if not os.environ.get(CALIBRATION_DIR_ENV):
        raise SystemExit(f"set {CALIBRATION_DIR_ENV} to the folder the calibrations go to")
    for name in ("espeak-ng", "flite"):
        asyncio.run(make_engine(name).prepare())


if __name__ == "__main__":
    calibrate_kept()
