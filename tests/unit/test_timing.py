"""Playback arithmetic and the bench helper, on crafted timings."""

import pytest

from bench_py.measure.load import concurrency_levels
from bench_py.measure.timing import bench, chunk_stats, underruns

RATE = 24_000
MS100 = 2_400  # samples in 100 ms


def test_no_underrun_when_audio_arrives_ahead_of_playback():
    arrivals = [(10.0, MS100), (60.0, MS100), (150.0, MS100), (310.0, MS100)]
    # Playback: 10→110, then to 210, then 310 exactly when the next arrives: not starved.
    assert underruns(arrivals, RATE) == (0, 0.0)


def test_each_starvation_counts_once_with_its_stall():
    arrivals = [(0.0, MS100), (150.0, MS100), (260.0, MS100), (900.0, MS100)]
    count, stall = underruns(arrivals, RATE)
    # 100→150 (50 ms), 250→260 (10 ms), 360→900 (540 ms)
    assert count == 3
    assert stall == pytest.approx(600.0)


def test_empty_and_single_chunk_streams():
    assert underruns([], RATE) == (0, 0.0)
    assert underruns([(5.0, 100)], RATE) == (0, 0.0)


def test_chunk_stats_in_ms_of_audio_and_gaps():
    stats = chunk_stats([(0.0, 960), (40.0, 960), (80.0, 480), (200.0, 960)], RATE)
    assert stats["chunk_ms"] == [40.0, 40.0, 20.0, 40.0]
    assert stats["count"] == 4
    assert stats["gap_ms_p50"] == pytest.approx(40.0)
    assert stats["gap_ms_p99"] == pytest.approx(118.4)  # linear: 40 + 0.98 * 80


def test_bench_runs_warmup_outside_and_flags_it():
    calls = []
    runs = bench(lambda: calls.append(len(calls)) or len(calls), n=5, warmup=2)
    assert [r.warmup for r in runs] == [True, True, False, False, False, False, False]
    assert [r.index for r in runs] == [-2, -1, 0, 1, 2, 3, 4]
    assert len(calls) == 7
    with pytest.raises(ValueError):
        bench(lambda: 1, n=0)


def test_concurrency_levels_double_up_to_the_limit():
    assert concurrency_levels(1) == [1]
    assert concurrency_levels(8) == [1, 2, 4, 8]
    assert concurrency_levels(12) == [1, 2, 4, 8, 12]


def test_bench_async_hands_over_each_result_as_it_is_taken_so_a_stop_loses_none():
    import asyncio

    from bench_py.measure.timing import bench_async

    calls: list[int] = []
    kept = []

    async def request() -> int:
        calls.append(len(calls))
        if len(calls) == 4:
            raise RuntimeError("the run was stopped")  # an abort, mid-loop
        return calls[-1]

    with pytest.raises(RuntimeError):
        asyncio.run(bench_async(request, n=5, warmup=1, keep=kept.append))
    assert [(t.value, t.warmup, t.index) for t in kept] == [(0, True, -1), (1, False, 0), (2, False, 1)]
