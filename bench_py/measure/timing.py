"""Timing helpers: the one ``bench(fn, n)`` every timed path uses, and playback arithmetic.

Pure functions over raw arrival records ``(ms since send, samples in that read)``; every
figure they return can be recomputed from the records kept in the measurements file.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bench_py.measure.stats import percentile

T = TypeVar("T")


@dataclass(frozen=True)
class Timed(Generic[T]):
    value: T
    warmup: bool
    index: int  # -k..-1 for warmups, 0..n-1 for timed runs


def bench(fn: Callable[[], T], n: int = 5, warmup: int = 1) -> list[Timed[T]]:
    """Call ``fn`` ``warmup`` times (kept, flagged, excluded by callers), then ``n`` timed times."""
    if n < 1 or warmup < 0:
        raise ValueError("bench needs n >= 1 and warmup >= 0")
    out = [Timed(fn(), True, i - warmup) for i in range(warmup)]
    return out + [Timed(fn(), False, i) for i in range(n)]


async def bench_async(
    fn: Callable[[], Awaitable[T]],
    n: int = 5,
    warmup: int = 1,
    keep: Callable[[Timed[T]], None] = lambda _timed: None,
) -> list[Timed[T]]:
    """:func:`bench` for coroutines: strictly sequential, concurrency 1. ``keep`` sees each
    result the moment it is taken, so a run that stops half-way still has every one before."""
    if n < 1 or warmup < 0:
        raise ValueError("bench needs n >= 1 and warmup >= 0")
    out: list[Timed[T]] = []
    for i in range(-warmup, n):
        timed = Timed(await fn(), i < 0, i)
        keep(timed)
        out.append(timed)
    return out


def underruns(arrivals: Sequence[tuple[float, int]], rate: int) -> tuple[int, float]:
    """Underrun count and total stall (ms) for a player that starts at the first audio sample.

    Playback consumes at real time from the first arrival; an underrun is a moment when it has
    consumed everything received, lasting until the next arrival. The end of the stream is not
    an underrun.
    """
    if not arrivals:
        return 0, 0.0
    first_ms, first_samples = arrivals[0]
    plays_until = first_ms + 1000.0 * first_samples / rate
    count, stall = 0, 0.0
    for at_ms, samples in arrivals[1:]:
        if at_ms > plays_until:
            count += 1
            stall += at_ms - plays_until
            plays_until = at_ms
        plays_until += 1000.0 * samples / rate
    return count, stall


def chunk_stats(arrivals: Sequence[tuple[float, int]], rate: int) -> dict[str, Any]:
    """Audio per network read (ms of audio) and the gaps between reads (ms of wall time)."""
    sizes = [1000.0 * samples / rate for _, samples in arrivals]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    return {
        "count": len(sizes),
        "chunk_ms": [round(s, 3) for s in sizes],
        "chunk_ms_p50": percentile(sizes, 50),
        "gap_ms_p50": percentile(gaps, 50),
        "gap_ms_p99": percentile(gaps, 99),
    }
