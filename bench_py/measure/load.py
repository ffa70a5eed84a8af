"""Load shapes as parameters: a concurrency sweep and a Poisson request-rate mode.

Each level keeps its raw per-request results; per-level figures (latency percentiles,
aggregate RTF, error rate) are computed from them. A sweep stops early once a level's error
rate passes the threshold: more load would only measure the failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench_py.measure.client import StreamResult
from bench_py.measure.stats import summarize

MakeRequest = Callable[[int], Awaitable[StreamResult]]


def concurrency_levels(limit: int) -> list[int]:
    """1, 2, 4, … up to ``limit`` (``limit`` itself included when it is not a power of two)."""
    if limit < 1:
        raise ValueError("the concurrency limit must be at least 1")
    levels, level = [], 1
    while level < limit:
        levels.append(level)
        level *= 2
    return [*levels, limit]


def level_figures(results: Sequence[StreamResult], wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    audio_s = sum(r.audio_s for r in ok)
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "error_rate": (len(results) - len(ok)) / len(results) if results else 0.0,
        "wall_s": wall_s,
        # Aggregate RTF: wall time of the level over all audio it produced (below 1: keeps up).
        "aggregate_rtf": wall_s / audio_s if audio_s else None,
        "ttfa_ms": summarize([r.ttfa_ms for r in ok]),
        "total_ms": summarize([r.total_ms for r in ok]),
        "rtf": summarize([r.rtf for r in ok]),
        "raw": [
            {
                "ttfa_ms": r.ttfa_ms,
                "total_ms": r.total_ms,
                "audio_s": r.audio_s,
                "ok": r.ok,
                "error": r.error,
                "sent_at": r.sent_at,
            }
            for r in results
        ],
    }


async def sweep(
    make_request: MakeRequest, limit: int, requests_per_level: int, max_error_rate: float = 0.1
) -> dict[str, Any]:
    """For each level, keep ``level`` requests in flight until ``requests_per_level`` have run."""
    levels: list[dict[str, Any]] = []
    stopped = None
    for level in concurrency_levels(limit):
        queue = list(range(max(requests_per_level, level)))
        results: list[StreamResult] = []

        async def worker(queue: list[int] = queue, results: list[StreamResult] = results) -> None:
            while queue:
                results.append(await make_request(queue.pop()))

        started = time.monotonic()
        await asyncio.gather(*[worker() for _ in range(level)])
        figures = {"concurrency": level, **level_figures(results, time.monotonic() - started)}
        levels.append(figures)
        if figures["error_rate"] > max_error_rate:
            stopped = f"error rate {figures['error_rate']:.0%} at concurrency {level} passed {max_error_rate:.0%}"
            break
    return {
        "mode": "concurrency_sweep",
        "limit": limit,
        "requests_per_level": requests_per_level,
        "max_error_rate": max_error_rate,
        "levels": levels,
        "stopped_early": stopped,
    }


async def poisson(make_request: MakeRequest, rate_per_s: float, requests: int, seed: int = 0) -> dict[str, Any]:
    """Send ``requests`` with exponential inter-arrival times (mean ``1/rate_per_s``), open loop."""
    if rate_per_s <= 0 or requests < 1:
        raise ValueError("poisson load needs a positive rate and at least one request")
    rng = random.Random(seed)
    offsets, at = [], 0.0
    for _ in range(requests):
        offsets.append(at)
        at += rng.expovariate(rate_per_s)
    started = time.monotonic()

    async def scheduled(index: int, offset: float) -> StreamResult:
        await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
        return await make_request(index)

    results = await asyncio.gather(*[scheduled(i, o) for i, o in enumerate(offsets)])
    figures = level_figures(results, time.monotonic() - started)
    return {"mode": "poisson", "rate_per_s": rate_per_s, "seed": seed, "schedule_s": offsets, **figures}
