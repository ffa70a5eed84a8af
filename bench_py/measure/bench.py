"""Phase 3's timed loops: utterances × voice conditions × repetitions, warmup outside.

One record per request keeps the raw timings; summaries are computed from those records.
Timeouts are recorded as such, never dropped.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
import numpy as np

from bench_py.audio import Pcm, write_wav_file
from bench_py.engines import standin
from bench_py.engines.http import Condition, SpeechRequest
from bench_py.measure import netstamp
from bench_py.measure.client import StreamResult, stream_request
from bench_py.measure.stats import summarize
from bench_py.measure.timing import Timed, bench_async, chunk_stats


class Target(Protocol):
    def request(self, text: str, condition: Condition) -> SpeechRequest: ...


class LocalTarget(Protocol):
    """An engine without a stream (install paths 2C, 2D): only the whole synthesis can be timed."""

    streaming: bool  # False

    def synthesize(self, text: str, condition: Condition) -> Pcm: ...


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
    ttfa_audible_ms: float | None
    total_ms: float
    audio_s: float
    samples: int
    sample_rate: int
    rtf: float | None
    chunks: dict[str, Any]
    underruns: int
    underrun_ms: float
    audible_threshold_dbfs: float
    arrivals: list[list[float]]  # [ms since send, samples in that read]: the raw stream timeline
    clock: str  # "kernel" (receive stamps) or "monotonic" (read in user space)
    wav: str | None = None
    delivery: str | None = None  # "whole" (a sized body) or "streamed" (chunked), as the server sent it
    rate_source: str | None = None  # where sample_rate came from: headers, wav header, documented, default
    standin: str | None = None  # the stand-in the server said it was (X-Voxbench-Standin), if any


Progress = Callable[[dict[str, Any]], None]


async def one_request(
    client: httpx.AsyncClient,
    target: Target,
    side: str,
    condition: Condition,
    index: int,
    repetition: int,
    text: str,
    audible_threshold_dbfs: float = -40.0,
    should_stop: Callable[[], None] = lambda: None,
) -> tuple[RequestRecord, Pcm]:
    """One streamed request, measured; the record and the audio it returned."""
    should_stop()  # an abort (co-tenant gate, operator) stops the loop before the next request
    if getattr(target, "streaming", True) is False:
        local = cast(LocalTarget, target)  # only the targets of paths 2C and 2D say streaming = False
        return await _one_synthesis(local, side, condition, index, repetition, text, audible_threshold_dbfs)
    request = target.request(text, condition)
    result = await stream_request(client, request, audible_threshold_dbfs)
    record = RequestRecord(
        side=side,
        condition=condition,
        utterance=index,
        repetition=repetition,
        warmup=repetition < 0,
        status=result.status,
        ok=result.ok,
        timed_out=result.timed_out,
        error=result.error,
        samples=len(result.samples),
        sample_rate=result.rate,
        standin=standin.answered_as(result.headers),
        **result.metrics(),
    )
    return record, Pcm(result.samples, result.rate)


async def _one_synthesis(
    target: LocalTarget,
    side: str,
    condition: Condition,
    index: int,
    repetition: int,
    text: str,
    audible_threshold_dbfs: float,
) -> tuple[RequestRecord, Pcm]:
    """A whole synthesis in a worker thread, timed from call to return: ``total_ms`` is the
    total synthesis latency; there is no first byte, so TTFB, TTFA and chunks stay empty."""
    started = time.monotonic()
    error, timed_out = None, False
    try:
        pcm = await asyncio.to_thread(target.synthesize, text, condition)
    except Exception as failure:  # the engine's own error is the record's evidence
        timed_out = isinstance(failure, subprocess.TimeoutExpired)
        error, pcm = f"{type(failure).__name__}: {failure}"[:500], Pcm(np.zeros(0, np.int16), 24000)
    total_ms = (time.monotonic() - started) * 1000
    audio_s = pcm.duration_s
    record = RequestRecord(
        side=side,
        condition=condition,
        utterance=index,
        repetition=repetition,
        warmup=repetition < 0,
        status=0,
        ok=error is None and len(pcm.samples) > 0,
        timed_out=timed_out,
        error=error,
        ttfb_ms=None,
        ttfa_ms=None,
        ttfa_audible_ms=None,
        total_ms=total_ms,
        audio_s=audio_s,
        samples=len(pcm.samples),
        sample_rate=pcm.rate,
        rtf=total_ms / 1000 / audio_s if audio_s > 0 else None,
        chunks=chunk_stats([], pcm.rate),
        underruns=0,
        underrun_ms=0.0,
        audible_threshold_dbfs=audible_threshold_dbfs,
        arrivals=[],
        clock="monotonic",
    )
    return record, pcm


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
    audible_threshold_dbfs: float = -40.0,
    should_stop: Callable[[], None] = lambda: None,
    records: list[RequestRecord] | None = None,
) -> list[RequestRecord]:
    """Warm up each condition, then time every utterance ``repetitions`` times.

    Each record is appended to ``records`` (its WAV written first) the moment its request ends,
    so a caller whose run is stopped by an exception still holds every request already taken.
    """
    records = [] if records is None else records

    def keep(run: Timed[tuple[RequestRecord, Pcm]], condition: str, index: int) -> None:
        record, pcm = run.value
        record.repetition, record.warmup = run.index, run.warmup
        if wav_dir is not None and run.index == 0 and not run.warmup and record.ok:
            path = wav_dir / side / condition / f"u{index:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav_file(str(path), pcm)  # atomic: a full disk leaves no half WAV
            record.wav = str(path.relative_to(wav_dir.parent))
        records.append(record)

    async with netstamp.client(timeouts) as client:
        request = partial(
            one_request, client, target, side, audible_threshold_dbfs=audible_threshold_dbfs, should_stop=should_stop
        )
        for condition in conditions:
            for index, text in enumerate(utterances):
                # Warmup belongs to the condition, before its first timed request, outside the loop.
                await bench_async(
                    partial(request, condition, index, 0, text),
                    n=repetitions,
                    warmup=warmup if index == 0 else 0,
                    keep=partial(keep, condition=condition, index=index),
                )
                record = records[-1]
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
            "ttfa_audible_ms": summarize([r.ttfa_audible_ms for r in ok]),
            "underruns": sum(r.underruns for r in ok),
            "underrun_ms": summarize([r.underrun_ms for r in ok]),
            "total_ms": summarize([r.total_ms for r in ok]),
            "rtf": summarize([r.rtf for r in ok]),
            "audio_s": summarize([r.audio_s for r in ok]),
        }
        if ok and all(r.ttfa_ms is None for r in ok):  # 2C/2D: the whole synthesis is the only latency
            out[condition]["total_synthesis_latency_ms"] = summarize([r.total_ms for r in ok])
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
    audible_threshold_dbfs: float = -40.0,
    should_stop: Callable[[], None] = lambda: None,
    kept: dict[str, list[RequestRecord]] | None = None,
) -> dict[str, list[RequestRecord]]:
    """Each side in turn (never concurrently: one side's load must not colour the other's timings).

    ``kept`` (side → records) fills as requests end: what a stopped run had already taken.
    """
    kept = {} if kept is None else kept
    for side, target in targets.items():
        asyncio.run(
            run_side(
                side,
                target,
                utterances,
                conditions,
                repetitions,
                warmup,
                timeouts,
                wav_dir,
                progress,
                audible_threshold_dbfs,
                should_stop,
                kept.setdefault(side, []),
            )
        )
    return kept


async def run_load(
    target: Target,
    text: str,
    timeouts: httpx.Timeout,
    limit: int,
    requests_per_level: int,
    max_error_rate: float,
    poisson_rate_per_s: float,
    poisson_requests: int,
    seed: int,
    should_stop: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The candidate under load: a concurrency sweep, then (rate > 0) an open-loop Poisson run."""
    from bench_py.measure import load

    request = target.request(text, "preset")
    async with netstamp.client(timeouts, httpx.Limits(max_connections=limit * 2)) as client:

        async def one(_index: int) -> StreamResult:
            should_stop()
            return await stream_request(client, request)

        result: dict[str, Any] = {
            "sweep": await load.sweep(one, limit, requests_per_level, max_error_rate),
            "utterance": text,
        }
        if poisson_rate_per_s > 0:
            result["poisson"] = await load.poisson(one, poisson_rate_per_s, poisson_requests, seed)
    return result
