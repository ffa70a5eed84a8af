"""The co-tenant latency gate: health is latency, not a /health 200.

During STARTING and BENCHING a background thread probes the co-tenant every interval. When
the p50 of the last ``window`` probes exceeds ``max_ratio`` × the baseline p50 (a failed probe
counts as infinitely slow), the gate trips once: it calls ``on_trip`` (which writes the run's
abort flag) with the evidence. Every probe is kept for the results.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import httpx

from bench_py.config.model import Cotenant
from bench_py.measure.cotenant import Probe, probe_once


def window_p50(latencies: Sequence[float | None]) -> float:
    """p50 of a window of probe latencies; a failed probe (None) counts as infinitely slow."""
    return statistics.median([math.inf if v is None else v for v in latencies])


def should_trip(latencies: Sequence[float | None], baseline_p50: float, window: int, max_ratio: float) -> bool:
    """True once ``window`` probes exist and their p50 is above ``max_ratio`` × baseline."""
    if len(latencies) < window:
        return False
    return window_p50(latencies[-window:]) > max_ratio * baseline_p50


class CotenantGate:
    def __init__(
        self,
        config: Cotenant,
        baseline_p50: float,
        interval_s: float,
        window: int,
        max_ratio: float,
        on_trip: Callable[[str, dict[str, Any]], None],
        phase: Callable[[], str] = lambda: "",
    ) -> None:
        self._config, self._baseline = config, baseline_p50
        self._interval, self._window, self._max_ratio = interval_s, window, max_ratio
        self._on_trip, self._phase = on_trip, phase
        self._stop = threading.Event()
        self.tripped = threading.Event()
        self.probes: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                probe: Probe = probe_once(client, self._config)
                self.probes.append({**asdict(probe), "phase": self._phase()})
                latencies = [p["latency_ms"] for p in self.probes]
                if not self.tripped.is_set() and should_trip(latencies, self._baseline, self._window, self._max_ratio):
                    self.tripped.set()
                    p50 = window_p50(latencies[-self._window :])
                    shown = "unreachable" if math.isinf(p50) else f"{p50:.0f} ms"
                    reason = (
                        f"co-tenant gate tripped: p50 of the last {self._window} probes is {shown}, over "
                        f"{self._max_ratio:g}x the baseline {self._baseline:.0f} ms"
                    )
                    self._on_trip(reason, {"window": self.probes[-self._window :], "baseline_p50_ms": self._baseline})
                self._stop.wait(max(0.0, self._interval - (time.monotonic() - probe.at_s)))

    def __enter__(self) -> CotenantGate:
        self._thread = threading.Thread(target=self._run, name="voxbench-gate", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def results(self) -> dict[str, Any]:
        return {
            "interval_s": self._interval,
            "window": self._window,
            "max_ratio": self._max_ratio,
            "baseline_p50_ms": self._baseline,
            "tripped": self.tripped.is_set(),
            "probes": self.probes,
        }
