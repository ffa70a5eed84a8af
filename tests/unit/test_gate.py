"""The gate's decision, on crafted probe windows."""

import math

from bench_py.measure.gate import should_trip, window_p50


def test_p50_of_the_window_must_pass_the_ratio():
    assert not should_trip([30, 31], 30, window=3, max_ratio=2.0)  # not enough probes yet
    assert not should_trip([30, 95, 31], 30, 3, 2.0)  # one slow probe is not a trend
    assert should_trip([30, 95, 61], 30, 3, 2.0)  # two of three over 60 ms
    assert not should_trip([95, 99, 30, 31, 30], 30, 3, 2.0)  # only the last window counts
    assert not should_trip([30, 60, 60], 30, 3, 2.0)  # exactly 2x is not over


def test_failed_probes_count_as_infinitely_slow():
    assert window_p50([None, None, 30]) == math.inf
    assert should_trip([30, None, None], 30, 3, 2.0)  # the co-tenant died
