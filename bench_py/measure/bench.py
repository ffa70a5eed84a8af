"""Phase 3's timed loops: utterances × voice conditions × repetitions, warmup outside.

One record per request keeps the raw timings; summaries are computed from those records.
Timeouts are recorded as such, never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench_py.audio import Pcm, write_wav_file
from bench_py.engines.http import Condition, SpeechRequest
from bench_py.measure.client import stream_speech
from bench_py.measure.stats import summarize


class Target(Protocol):
    def request(self, text: str, condition: Condition) -> SpeechRequest: ...


@dataclass
class RequestRecord:
    side: str
    condition: str
    utterance: int
    repetition: int  # -1 for warmup requests
    warmup: bool
    status: int
    ok: bool
    timed_out: bool
    error: str | None
    ttfb_ms: float | None
    ttfa_ms: float | None
    total_ms: float
    audio_s: float
    samples: int
    sample_rate: int
    rtf: float | None
    chunks: int
    wav: str | None = None


Progress = Callable[[dict[str, Any]], None]


async def _one(
    client: httpx.AsyncClient, target: Target, side: str, condition: Condition, index: int, repetition: int, text: str
) -> tuple[RequestRecord, Pcm]:
    request = target.request(text, condition)
    result = await stream_speech(
        client,
        request.url,
        request.body,
        headers=request.headers,
        response_format=request.response_format,
        sse=request.sse,
    )
    timed_out = bool(result.error and "Timeout" in result.error)
    audio_s = result.audio_s
    record = RequestRecord(
        side=side,
        condition=condition,
        utterance=index,
        repetition=repetition,
        warmup=repetition < 0,
        status=result.status,
        ok=result.ok,
        timed_out=timed_out,
        error=result.error,
        ttfb_ms=result.ttfb_ms,
        ttfa_ms=result.ttfa_ms,
        total_ms=result.total_ms,
        audio_s=audio_s,
        samples=len(result.samples),
        sample_rate=result.rate,
        rtf=(result.total_ms / 1000 / audio_s) if result.ok and audio_s > 0 else None,
        chunks=len(result.arrivals),
    )
    return record, Pcm(result.samples, result.rate)


async def run_side(
    side: str,
    target: Target,
    utterances: Sequence[str],
    conditions: Sequence[Condition],
    repetitions: int,
    warmup: int,
    timeouts: httpx.Timeout,
    wav_dir: Path | None,
    progress: Progress | None = None,
) -> list[RequestRecord]:
    """Warm up each condition, then time every utterance ``repetitions`` times."""
    records: list[RequestRecord] = []
    async with httpx.AsyncClient(timeout=timeouts) as client:
        for condition in conditions:
            for _ in range(warmup):
                record, _pcm = await _one(client, target, side, condition, 0, -1, utterances[0])
                records.append(record)
            for index, text in enumerate(utterances):
                for repetition in range(repetitions):
                    record, pcm = await _one(client, target, side, condition, index, repetition, text)
                    if wav_dir is not None and repetition == 0 and record.ok:
                        path = wav_dir / side / condition / f"u{index:02d}.wav"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        write_wav_file(str(path), pcm)
                        record.wav = str(path.relative_to(wav_dir.parent))
                    records.append(record)
                if progress:
                    progress(
                        {
                            "side": side,
                            "condition": condition,
                            "utterance": index + 1,
                            "of": len(utterances),
                            "ttfa_ms": record.ttfa_ms,
                            "ok": record.ok,
                        }
                    )
    return records


def summarize_side(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Per condition: TTFA, TTFB, total and RTF summaries, and timeouts, over timed requests only."""
    out: dict[str, Any] = {}
    for condition in sorted({r.condition for r in records}):
        timed = [r for r in records if r.condition == condition and not r.warmup]
        ok = [r for r in timed if r.ok]
        out[condition] = {
            "requests": len(timed),
            "ok": len(ok),
            "timeouts": sum(r.timed_out for r in timed),
            "errors": sum(not r.ok and not r.timed_out for r in timed),
            "ttfb_ms": summarize([r.ttfb_ms for r in ok]),
            "ttfa_ms": summarize([r.ttfa_ms for r in ok]),
            "total_ms": summarize([r.total_ms for r in ok]),
            "rtf": summarize([r.rtf for r in ok]),
            "audio_s": summarize([r.audio_s for r in ok]),
        }
    return out


def timeout_fraction(records: Sequence[RequestRecord]) -> float:
    timed = [r for r in records if not r.warmup]
    return sum(r.timed_out for r in timed) / len(timed) if timed else 0.0


def records_json(records: Sequence[RequestRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]


def run(
    targets: dict[str, Target],
    utterances: Sequence[str],
    conditions: Sequence[Condition],
    repetitions: int,
    warmup: int,
    timeouts: httpx.Timeout,
    wav_dir: Path | None,
    progress: Progress | None = None,
) -> dict[str, list[RequestRecord]]:
    """Each side in turn (never concurrently: one side's load must not colour the other's timings)."""
    return {
        side: asyncio.run(
            run_side(side, target, utterances, conditions, repetitions, warmup, timeouts, wav_dir, progress)
        )
        for side, target in targets.items()
    }
