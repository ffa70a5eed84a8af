#!/usr/bin/env python3
"""How exact is voxbench's time to first audio? Prints figures; not a test.

A stamping server writes, per request: the moment the request arrived, the moment it wrote
the first audio byte and the first audible byte, all on the machine's monotonic clock (shared
by every process on Linux). It can send a WAV header early, wait before the audio, and lead
with silence. Side by side in one run, against those stamps:

* voxbench's ``ttfa_ms`` and ``ttfa_audible_ms`` (bench_py.measure.client.stream_speech);
* a plain first-chunk timer (the first bytes of the body, whatever they are);
* ``curl -w %{time_starttransfer}``.

Usage: python bench/ttfa_accuracy.py [--requests 200] [--concurrency 1 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_py.audio import wav_header
from bench_py.measure import netstamp
from bench_py.measure.client import stream_speech

DELAY_MS, SILENCE_MS, RATE = 150.0, 200.0, 24_000


def serve(port: int) -> None:
    from aiohttp import web

    stamps: dict[str, dict[str, float]] = {}
    tone = (np.sin(2 * np.pi * 220 * np.arange(RATE // 2) / RATE) * 8000).astype("<i2").tobytes()
    silence = bytes(int(RATE * SILENCE_MS / 1000) * 2)

    async def speech(request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        rid = request.headers["X-Request-Id"]
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        await response.write(wav_header(RATE))  # the early header: bytes, but not audio
        await asyncio.sleep(DELAY_MS / 1000)
        first_audio = time.monotonic()
        await response.write(silence[:1920])
        for start in range(1920, len(silence), 1920):
            await response.write(silence[start : start + 1920])
        first_audible = time.monotonic()
        await response.write(tone[:1920])
        await response.write(tone[1920:])
        await response.write_eof()
        stamps[rid] = {"arrived": arrived, "first_audio": first_audio, "first_audible": first_audible}
        return response

    async def stamp(request: web.Request) -> web.Response:
        return web.json_response(stamps.get(request.match_info["rid"], {}))

    async def all_stamps(_request: web.Request) -> web.Response:
        return web.json_response(stamps)

    app = web.Application()
    app.router.add_post("/speech", speech)
    app.router.add_get("/stamps/{rid}", stamp)
    app.router.add_get("/stamps", all_stamps)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def voxbench_one(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    rid = uuid.uuid4().hex
    result = await stream_speech(client, f"{url}/speech", {}, headers={"X-Request-Id": rid}, response_format="wav")
    return {
        "rid": rid,
        "audio": result.sent_at + result.ttfa_ms / 1000,
        "audible": result.sent_at + result.ttfa_audible_ms / 1000,
    }


async def first_chunk_one(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    rid = uuid.uuid4().hex
    async with client.stream("POST", f"{url}/speech", json={}, headers={"X-Request-Id": rid}) as response:
        first = None
        async for _ in response.aiter_raw():
            first = first or time.monotonic()
    return {"rid": rid, "audio": first, "audible": first}


def curl_one(url: str) -> dict[str, float]:
    rid = uuid.uuid4().hex
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{time_starttransfer}",
            "-X",
            "POST",
            "-H",
            f"X-Request-Id: {rid}",
            "-d",
            "{}",
            f"{url}/speech",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stamps = httpx.get(f"{url}/stamps/{rid}").json()
    truth = (stamps["first_audio"] - stamps["arrived"]) * 1000
    audible = (stamps["first_audible"] - stamps["arrived"]) * 1000
    return {"ttfa_err_ms": float(out) * 1000 - truth, "audible_err_ms": float(out) * 1000 - audible}


async def run_level(
    fn, url: str, concurrency: int, requests: int, stagger_ms: float = 0.0
) -> tuple[list[dict[str, float]], float]:
    limits = httpx.Limits(max_connections=concurrency * 2)
    # voxbench's own client reads kernel receive stamps; the first-chunk timer is a plain httpx client.
    make = (
        netstamp.client
        if fn is voxbench_one
        else (lambda timeout, limits: httpx.AsyncClient(timeout=timeout, limits=limits))
    )
    async with make(httpx.Timeout(30.0), limits) as client:
        queue = list(range(requests))
        out: list[dict[str, float]] = []

        async def worker() -> None:
            rng = random.Random(len(queue))
            while queue:
                queue.pop()
                if stagger_ms:
                    await asyncio.sleep(rng.uniform(0, stagger_ms) / 1000)
                out.append(await fn(client, url))

        cpu = time.process_time()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        cpu_ms = (time.process_time() - cpu) / requests * 1000
        # Stamps are fetched once, after the level: fetching them per request would load the loop.
        stamps = (await client.get(f"{url}/stamps")).json()
        errors = [
            {
                "ttfa_err_ms": (r["audio"] - stamps[r["rid"]]["first_audio"]) * 1000,
                "audible_err_ms": (r["audible"] - stamps[r["rid"]]["first_audible"]) * 1000,
            }
            for r in out
        ]
        return errors, cpu_ms


def row(name: str, level: int, results: list[dict[str, float]], cpu_ms: float | None) -> str:
    ttfa = np.array([r["ttfa_err_ms"] for r in results])
    aud = np.array([r["audible_err_ms"] for r in results])
    cpu = f"{cpu_ms:6.2f}" if cpu_ms is not None else "     —"
    return (
        f"{name:<22}{level:>4}  {np.percentile(ttfa, 50):>8.2f} {np.percentile(np.abs(ttfa), 99):>8.2f}"
        f"  {np.percentile(aud, 50):>9.2f} {np.percentile(np.abs(aud), 99):>9.2f}  {cpu}"
    )


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--requests", type=int, default=200)
    cli.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    cli.add_argument("--port", type=int, default=18777)
    cli.add_argument(
        "--stagger-ms",
        type=float,
        default=1000.0,
        help="at c>1, also run with each request delayed by uniform(0, this): load as it arrives",
    )
    args = cli.parse_args()
    server = multiprocessing.Process(target=serve, args=(args.port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{args.port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/stamps/x")
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    print(f"server: WAV header at once, audio after {DELAY_MS:.0f} ms, {SILENCE_MS:.0f} ms of silence first")
    print("error = measured moment - the server's own stamp (ms); |p99| of absolute errors; CPU = client ms/stream")
    print(f"{'method':<22}{'c':>4}  {'TTFA p50':>8} {'|p99|':>8}  {'audible p50':>9} {'|p99|':>9}  CPU")
    for level in args.concurrency:
        for stagger in [0.0] if level == 1 else [0.0, args.stagger_ms]:
            tag = f" (staggered {stagger:g} ms)" if stagger else (" (all at once)" if level > 1 else "")
            results, cpu = asyncio.run(run_level(voxbench_one, url, level, args.requests, stagger))
            print(row("voxbench stream_speech", level, results, cpu) + tag)
            results, cpu = asyncio.run(run_level(first_chunk_one, url, level, args.requests, stagger))
            print(row("first-chunk timer", level, results, cpu) + tag)
    curl = [curl_one(url) for _ in range(min(args.requests, 50))]
    print(row("curl time_starttransfer", 1, curl, None))
    print(json.dumps({"note": "curl ends at the response headers; a first-chunk timer counts the early WAV header"}))
    server.terminate()


if __name__ == "__main__":
    main()
