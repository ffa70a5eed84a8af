"""The co-tenant latency gate: health is latency, not a /health 200.

During STARTING and BENCHING a background thread probes the co-tenant every interval. When
the p50 of the last ``window`` probes exceeds ``max_ratio`` × the baseline p50 (a failed probe
counts as infinitely slow), the gate trips once: it calls ``on_trip`` (which writes the run's
abort flag) with the evidence. Every probe is kept for the results.

The rule looks at the client-side latency alone: a co-tenant that its users see slowed is a
reason to stop, whatever slowed it. The evidence says where the time went (:func:`explain`), so
that a user can tell the co-tenant's own slowdown from a slow path to it.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal

import httpx

from bench_py.config.model import Cotenant
from bench_py.measure.cotenant import Prober

Cause = Literal["cotenant", "path", "unreachable", "unknown"]

#: One clause per cause, appended to the abort's reason.
CAUSE_CLAUSES: dict[str, str] = {
    "cotenant": "the co-tenant itself slowed (its server-side p50 {server} passes the line)",
    "path": "the path to the co-tenant slowed, not the co-tenant (its server-side p50 {server} stayed within "
    "the line): network, or the probing side starved",
    "unreachable": "most probes of the window failed",
    "unknown": "the co-tenant reports no server-side time, so whether it or the path slowed is unknown",
}


def window_p50(latencies: Sequence[float | None]) -> float:
    """p50 of a window of probe latencies; a failed probe (None) counts as infinitely slow."""
    return statistics.median([math.inf if v is None else v for v in latencies])


def should_trip(latencies: Sequence[float | None], baseline_p50: float, window: int, max_ratio: float) -> bool:
    """True once ``window`` probes exist and their p50 is above ``max_ratio`` × baseline."""
    if len(latencies) < window:
        return False
    return window_p50(latencies[-window:]) > max_ratio * baseline_p50


def explain(probes: Sequence[dict[str, Any]], line_ms: float, baseline_path_ms: float = 0.0) -> dict[str, Any]:
    """Where a tripping window's time went: its client and server p50 and the cause.

    ``unreachable``: most probes failed. ``unknown``: fewer than most probes carry a server-side
    time. ``cotenant``: the server-side p50, with the path as fast as at BASELINE
    (``baseline_path_ms``), passes the line: the co-tenant's own slowdown trips the gate.
    ``path``: it does not; what pushed the client-side p50 past the line is between the client
    and the server (the network, or the probing side starved of CPU). A probe the server answered
    with an error counts as infinitely slow on the server side too.
    """
    client_p50 = window_p50([p.get("latency_ms") for p in probes])
    server = [
        p["server_ms"] if p.get("latency_ms") is not None else math.inf
        for p in probes
        if p.get("server_ms") is not None or (p.get("latency_ms") is None and p.get("status") is not None)
    ]
    majority = len(probes) // 2 + 1
    server_p50 = statistics.median(server) if len(server) >= majority else None
    cause: Cause
    if math.isinf(client_p50):
        cause = "unreachable"
    elif server_p50 is None:
        cause = "unknown"
    elif server_p50 + baseline_path_ms > line_ms:
        cause = "cotenant"
    else:
        cause = "path"
    return {
        "cause": cause,
        "client_p50_ms": None if math.isinf(client_p50) else client_p50,
        "server_p50_ms": None if server_p50 is None or math.isinf(server_p50) else server_p50,
        "baseline_path_ms": baseline_path_ms,
    }


def _shown(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} ms"


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
        baseline_server_p50: float | None = None,
    ) -> None:
        self._config, self._baseline = config, baseline_p50
        self._interval, self._window, self._max_ratio = interval_s, window, max_ratio
        self._on_trip, self._phase = on_trip, phase
        # The path's share of a BASELINE probe (client p50 - server p50): what a healthy path adds.
        self._baseline_path = max(0.0, baseline_p50 - baseline_server_p50) if baseline_server_p50 else 0.0
        self._stop = threading.Event()
        self.tripped = threading.Event()
        self.probes: list[dict[str, Any]] = []
        self.trip: dict[str, Any] | None = None
        self.metrics_note: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def line_ms(self) -> float:
        return self._max_ratio * self._baseline

    def _record(self, window: list[dict[str, Any]], tripped_at: float) -> dict[str, Any]:
        """The trip's evidence: the window's probes, where their time went, the delay and the line."""
        explained = explain(window, self.line_ms, self._baseline_path)
        over = [p for p in window if p["latency_ms"] is None or p["latency_ms"] > self.line_ms]
        p50 = "unreachable" if explained["client_p50_ms"] is None else f"{explained['client_p50_ms']:.0f} ms"
        clause = CAUSE_CLAUSES[explained["cause"]].format(server=_shown(explained["server_p50_ms"]))
        reason = (
            f"co-tenant gate tripped: p50 of the last {self._window} probes is {p50}, over "
            f"{self._max_ratio:g}x the baseline {self._baseline:.0f} ms; cause {explained['cause']}: {clause}"
        )
        return {
            "reason": reason,
            **explained,
            "line_ms": self.line_ms,
            "baseline_p50_ms": self._baseline,
            "window": window,
            # From the send of the window's first probe over the line to the trip (monotonic s).
            "first_over_at_s": over[0]["at_s"],
            "tripped_at_s": tripped_at,
            "detection_delay_s": round(tripped_at - over[0]["at_s"], 3),
        }

    def _run(self) -> None:
        with httpx.Client() as client:
            prober = Prober(client, self._config)
            while not self._stop.is_set():
                probe = prober.probe()
                path = (
                    round(probe.latency_ms - probe.server_ms, 3)
                    if probe.latency_ms is not None and probe.server_ms is not None
                    else None
                )
                self.probes.append({**asdict(probe), "path_ms": path, "phase": self._phase()})
                self.metrics_note = prober.metrics_note
                latencies = [p["latency_ms"] for p in self.probes]
                if not self.tripped.is_set() and should_trip(latencies, self._baseline, self._window, self._max_ratio):
                    self.trip = self._record(self.probes[-self._window :], time.monotonic())
                    self.tripped.set()
                    self._on_trip(self.trip["reason"], {k: v for k, v in self.trip.items() if k != "reason"})
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
            "line_ms": self.line_ms,
            "tripped": self.tripped.is_set(),
            "trip": self.trip,
            "metrics_note": self.metrics_note,
            "probes": self.probes,
        }
