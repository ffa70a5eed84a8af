#!/usr/bin/env python3
"""The co-tenant gate's false aborts and detection delay. Prints figures; not a test.

In the embedded default's CPU layout (the co-tenant stand-in alone on CPU 0, the engine's CPU
loaded by unrelated work), the gate runs for many short trials against a healthy co-tenant:
a false abort is a trip while the co-tenant's own server-side latency (its
X-Server-Processing-Ms header) stayed at or below the threshold. Then 2x and 3x slowdowns are
injected through the co-tenant's knob and the delay to the trip is measured.

Usage: python bench/gate_false_aborts.py [--trials 10] [--trial-s 6] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import httpx  # noqa: E402

from bench_py.config.model import load  # noqa: E402
from bench_py.measure.cotenant import measure_latency  # noqa: E402
from bench_py.measure.gate import CotenantGate  # noqa: E402
from bench_py.standins.images import build_standins  # noqa: E402


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--trials", type=int, default=10)
    cli.add_argument("--trial-s", type=float, default=6.0)
    cli.add_argument("--interval", type=float, default=0.5)
    cli.add_argument("--port", type=int, default=18700)
    args = cli.parse_args()
    client = docker.from_env()
    images = build_standins(client, progress=lambda _line: None)
    container = client.containers.run(
        images["cotenant"],
        detach=True,
        cpuset_cpus="0",
        ports={"8000/tcp": ("127.0.0.1", args.port)},
        labels={"io.voxbench.bench-script": "gate"},
    )
    load_procs = []
    try:
        url = f"http://127.0.0.1:{args.port}"
        for _ in range(100):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        config = load({"gemma_mode": "parallel", "cotenant": {"url": f"{url}/v1/chat/completions"}}).cotenant
        baseline = measure_latency(config, 10, 2)["latency_ms"]["p50"]
        threshold = 2.0 * baseline
        # Unrelated work on the engine's CPU: synthesis in a loop, as a busy candidate would do.
        for _ in range(2):
            load_procs.append(
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        "1",
                        "sh",
                        "-c",
                        "while true; do echo 'The quick brown fox jumps over the lazy "
                        "dog again and again.' | espeak-ng --stdout > /dev/null; done",
                    ]
                )
            )
        print(
            f"baseline p50 {baseline:.1f} ms, threshold {threshold:.1f} ms (2x), interval {args.interval} s, "
            f"window 3; engine CPU loaded by espeak-ng"
        )
        trips, false_trips, probes = 0, 0, 0
        for _ in range(args.trials):
            tripped: list[dict] = []
            gate = CotenantGate(config, baseline, args.interval, 3, 2.0, lambda r, e, t=tripped: t.append(e))
            with gate:
                time.sleep(args.trial_s)
            probes += len(gate.probes)
            if tripped:
                trips += 1
                servers = [p["server_ms"] for p in tripped[0]["window"]]
                if all(s is not None and s <= threshold for s in servers):
                    false_trips += 1
        print(
            f"healthy co-tenant: {args.trials} trials x {args.trial_s:g} s, {probes} probes: {trips} trips, "
            f"{false_trips} false aborts (rate {false_trips / args.trials:.0%})"
        )
        for factor in (2.0, 3.0):
            delays = []
            for _ in range(3):
                tripped_at: list[float] = []
                gate = CotenantGate(
                    config, baseline, args.interval, 3, 2.0, lambda r, e, t=tripped_at: t.append(time.monotonic())
                )
                with gate:
                    time.sleep(1.5)
                    httpx.post(f"{url}/admin/degrade", json={"factor": factor})
                    slowed = time.monotonic()
                    done = threading.Event()
                    while not tripped_at and time.monotonic() - slowed < 10 * args.interval:
                        done.wait(0.02)
                httpx.post(f"{url}/admin/degrade", json={"factor": 1.0})
                delays.append(tripped_at[0] - slowed if tripped_at else None)
                time.sleep(0.5)
            shown = ", ".join("not detected" if d is None else f"{d:.2f} s" for d in delays)
            found = [d for d in delays if d is not None]
            median = (
                f"median {statistics.median(found):.2f} s = {statistics.median(found) / args.interval:.1f} intervals"
                if found
                else "never detected"
            )
            print(f"{factor:g}x slowdown: detection delay {shown} ({median})")
    finally:
        for proc in load_procs:
            subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
            proc.kill()
        container.remove(force=True)


if __name__ == "__main__":
    main()
