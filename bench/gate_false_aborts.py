#!/usr/bin/env python3
"""The co-tenant gate under background load and under real slowdowns. Prints figures; not a test.

The co-tenant stand-in runs in its container on CPU 0, as in the embedded default, and (unless
``--server-time header``) without its X-Server-Processing-Ms header: the gate reads the server's
time from its /metrics as it would from real vLLM. The gate runs with the rule of record (trip when
the p50 of the last 3 probes passes 2x the baseline p50) at ``--interval``.

1. The stand-in's CPU share of its p50 (its X-Server-Cpu-Ms over the baseline p50): contention is
   only real if the CPU part is (goal: >= 15 %).
2. Runs of the gate against a healthy co-tenant under background load: one core kept busy by an
   unrelated process (unpinned), the same process pinned to the co-tenant's CPU, and bursts on
   every core. A false abort is a trip while the co-tenant's own (server-side) p50 over the window
   stayed within 2x its baseline. Goal: none.
3. Real slowdowns through the stand-in's knob (1.5x, 2.5x, 3x its completion time) under the
   unpinned load. Goals: every slowdown past 2x caught, each within two probe intervals of the
   window's first probe over the line; none at 1.5x.

Usage: python bench/gate_false_aborts.py [--runs 7] [--run-s 8] [--interval 1.0] [--trials 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import httpx  # noqa: E402

from bench_py.config.model import load  # noqa: E402
from bench_py.measure.cotenant import measure_latency, resolve_model  # noqa: E402
from bench_py.measure.gate import CotenantGate, window_p50  # noqa: E402
from bench_py.standins.images import build_standins  # noqa: E402

COTENANT_CPU = "0"
WINDOW, MAX_RATIO = 3, 2.0
BUSY = ["sh", "-c", "while :; do :; done"]
# Bursts on every core: busy for 0.3-1.5 s, idle for 0.3-1.5 s, seeded so that reruns compare.
BURSTS = (
    "import random, sys, time\n"
    "rng = random.Random(int(sys.argv[1]))\n"
    "while True:\n"
    "    end = time.monotonic() + rng.uniform(0.3, 1.5)\n"
    "    while time.monotonic() < end: pass\n"
    "    time.sleep(rng.uniform(0.3, 1.5))\n"
)


@contextlib.contextmanager
def background(kind: str) -> Iterator[None]:
    """Unrelated work while the gate runs: ``busy`` (one core, unpinned), ``pinned`` (one core, on
    the co-tenant's CPU) or ``bursts`` (on and off, every core)."""
    if kind == "busy":
        commands = [BUSY]
    elif kind == "pinned":
        commands = [["taskset", "-c", COTENANT_CPU, *BUSY]]
    else:
        commands = [[sys.executable, "-c", BURSTS, str(seed)] for seed in range(os.cpu_count() or 2)]
    procs = [subprocess.Popen(c, start_new_session=True) for c in commands]
    try:
        time.sleep(1.0)
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def gate_run(config: Any, baseline: float, baseline_server: float | None, interval: float) -> CotenantGate:
    return CotenantGate(
        config, baseline, interval, WINDOW, MAX_RATIO, lambda _r, _e: None, baseline_server_p50=baseline_server
    )


def windows(probes: list[dict[str, Any]]) -> list[float]:
    latencies = [p["latency_ms"] for p in probes]
    return [window_p50(latencies[i - WINDOW : i]) for i in range(WINDOW, len(latencies) + 1)]


def p50(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def ratio(value: float | None, base: float | None) -> str:
    return "—" if value is None or not base else f"{value:.0f} ms ({value / base:.2f}x)"


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--runs", type=int, default=7, help="gate runs per background load (3 loads)")
    cli.add_argument("--run-s", type=float, default=8.0, help="length of one run")
    cli.add_argument("--interval", type=float, default=1.0, help="probe interval (the fast profile's)")
    cli.add_argument("--trials", type=int, default=4, help="trials per slowdown factor")
    cli.add_argument("--server-time", choices=("metrics", "header"), default="metrics")
    cli.add_argument("--port", type=int, default=18700)
    args = cli.parse_args()
    started = time.monotonic()
    client = docker.from_env()
    images = build_standins(client, progress=lambda _line: None)
    command = ["python3", "-m", "bench_py.standins.cotenant_server", "--host", "0.0.0.0", "--port", "8000"]
    if args.server_time == "metrics":
        command.append("--no-timing-header")
    container = client.containers.run(
        images["cotenant"],
        command,
        detach=True,
        cpuset_cpus=COTENANT_CPU,
        ports={"8000/tcp": ("127.0.0.1", args.port)},
        labels={"io.voxbench.bench-script": "gate"},
    )
    url = f"http://127.0.0.1:{args.port}"
    goals: list[tuple[str, str, bool]] = []
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            time.sleep(0.1)
        config = load({"gemma_mode": "parallel", "cotenant": {"url": f"{url}/v1/chat/completions"}}).cotenant
        config = resolve_model(config)
        base = measure_latency(config, 20, 3)
        baseline, baseline_server = base["latency_ms"]["p50"], base["server_ms"].get("p50")
        line = MAX_RATIO * baseline
        cpu = []
        with httpx.Client() as http:
            for _ in range(10):
                body = {"model": config.model, "messages": [{"role": "user", "content": config.prompt}]}
                answer = http.post(config.url, json={**body, "max_tokens": config.max_tokens})
                cpu.append(float(answer.headers["x-server-cpu-ms"]))
        share = statistics.median(cpu) / baseline
        print(
            f"co-tenant stand-in on CPU {COTENANT_CPU}, server time from {base['server_source'] or 'nowhere'}; "
            f"baseline p50 {baseline:.1f} ms (server {baseline_server or 0:.1f} ms), line {line:.1f} ms "
            f"({MAX_RATIO:g}x), window {WINDOW}, interval {args.interval:g} s"
        )
        print(f"stand-in CPU part: p50 {statistics.median(cpu):.1f} ms = {share:.0%} of its p50")
        goals.append(("CPU share of the stand-in's p50 >= 15 %", f"{share:.0%}", share >= 0.15))

        print(f"\nhealthy co-tenant, {args.runs} runs x {args.run_s:g} s per background load:")
        header = f"{'load':<40}{'probes':>7}{'client p50':>20}{'server p50':>20}{'worst window':>15}"
        print(f"{header}{'trips':>6}{'false':>6}")
        total_runs = total_false = 0
        for kind, label in (
            ("busy", "one busy core, unpinned"),
            ("pinned", f"one busy core on CPU {COTENANT_CPU} (co-tenant's)"),
            ("bursts", "bursts on every core"),
        ):
            probes: list[dict[str, Any]] = []
            trips = false = 0
            worst = 0.0
            with background(kind):
                for _ in range(args.runs):
                    gate = gate_run(config, baseline, baseline_server, args.interval)
                    with gate:
                        time.sleep(args.run_s)
                    probes += gate.probes
                    worst = max([worst, *windows(gate.probes)])
                    if gate.trip:
                        trips += 1
                        server = gate.trip["server_p50_ms"]
                        if server is None or not baseline_server or server <= MAX_RATIO * baseline_server:
                            false += 1
                            print(f"  false abort: {gate.trip['reason']}")
            total_runs, total_false = total_runs + args.runs, total_false + false
            client_p50 = p50([p["latency_ms"] for p in probes])
            server_p50 = p50([p["server_ms"] for p in probes])
            print(
                f"{label:<40}{len(probes):>7}{ratio(client_p50, baseline):>20}"
                f"{ratio(server_p50, baseline_server):>20}{worst / baseline:>14.2f}x{trips:>6}{false:>6}"
            )
        goals.append((f"0 false aborts in {total_runs} runs under background load", f"{total_false}", total_false == 0))

        print(f"\nreal slowdowns under one busy core (unpinned), {args.trials} trials each:")
        observe = 8 * args.interval
        missed = caught_late = trips_at_15 = 0
        delays: list[float] = []
        with background("busy"):
            for factor in (1.5, 2.5, 3.0):
                rows = []
                for _ in range(args.trials):
                    gate = gate_run(config, baseline, baseline_server, args.interval)
                    with gate:
                        while len(gate.probes) < WINDOW:
                            time.sleep(0.02)
                        httpx.post(f"{url}/admin/degrade", json={"slowdown": factor})
                        onset = time.monotonic()
                        while gate.trip is None and time.monotonic() - onset < observe:
                            time.sleep(0.02)
                    httpx.post(f"{url}/admin/degrade", json={"slowdown": 1.0})
                    time.sleep(args.interval)  # the last slowed probe drains
                    trip = gate.trip
                    if trip is None:
                        rows.append(f"not tripped in {observe:g} s")
                        missed += factor > MAX_RATIO
                        continue
                    trips_at_15 += factor < MAX_RATIO
                    delay = trip["detection_delay_s"]
                    if factor > MAX_RATIO:
                        delays.append(delay)
                        caught_late += delay > 2 * args.interval
                    rows.append(
                        f"{delay:.2f} s = {delay / args.interval:.2f} intervals (onset to trip "
                        f"{trip['tripped_at_s'] - onset:.2f} s), cause {trip['cause']}, client p50 "
                        f"{trip['client_p50_ms']:.0f} ms, server p50 {trip['server_p50_ms'] or 0:.0f} ms"
                    )
                print(f"  {factor:g}x:")
                for row in rows:
                    print(f"    {row}")
        shown = ", ".join(f"{d:.2f}" for d in delays) or "none"
        goals.append(("every slowdown past 2x caught", f"{missed} missed", missed == 0))
        goals.append(
            (
                f"caught within two probe intervals ({2 * args.interval:g} s)",
                f"max {max(delays, default=0):.2f} s",
                caught_late == 0 and missed == 0,
            )
        )
        goals.append(("no trip at 1.5x", f"{trips_at_15} trips", trips_at_15 == 0))
        print(f"  detection delays past 2x (s, first probe over the line to the trip): {shown}")
    finally:
        container.remove(force=True)
    print(f"\nsummary ({time.monotonic() - started:.0f} s):")
    for goal, figure, ok in goals:
        print(f"  {'PASS' if ok else 'FAIL'}  {goal:<52} {figure}")


if __name__ == "__main__":
    main()
