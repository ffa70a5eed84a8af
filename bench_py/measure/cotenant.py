"""The co-tenant probe: a small chat completion, timed end to end. Health is latency."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import httpx

from bench_py.config.model import Cotenant
from bench_py.measure.stats import summarize


@dataclass
class Probe:
    at_s: float  # monotonic time the probe was sent
    latency_ms: float | None  # None: it failed
    server_ms: float | None  # the server's own processing time, when it reports one
    status: int | None
    error: str | None = None


class CotenantUnreachable(RuntimeError):
    """The co-tenant did not answer; the message says where and how it failed."""


def probe_once(client: httpx.Client, config: Cotenant) -> Probe:
    body = {
        "model": config.model,
        "messages": [{"role": "user", "content": config.prompt}],
        "max_tokens": config.max_tokens,
    }
    sent = time.monotonic()
    try:
        response = client.post(config.url, json=body, timeout=config.timeout_s)
    except httpx.HTTPError as error:
        return Probe(sent, None, None, None, f"{type(error).__name__}: {error}")
    latency = (time.monotonic() - sent) * 1000
    server = response.headers.get("x-server-processing-ms")
    if response.status_code != 200:
        return Probe(sent, None, None, response.status_code, f"HTTP {response.status_code}")
    return Probe(sent, latency, float(server) if server else None, 200)


def measure_latency(config: Cotenant, probes: int, warmup: int) -> dict:
    """``warmup`` untimed probes, then ``probes`` timed ones; raw samples and their summary.

    Raises :class:`CotenantUnreachable` when any timed probe fails: a baseline with holes is no
    baseline.
    """
    with httpx.Client() as client:
        for _ in range(warmup):
            probe_once(client, config)
        samples = [probe_once(client, config) for _ in range(probes)]
    failed = [s for s in samples if s.latency_ms is None]
    if failed:
        raise CotenantUnreachable(
            f"the co-tenant at {config.url} failed {len(failed)} of {probes} probes ({failed[0].error}); "
            "check that it is running and answering before benchmarking beside it"
        )
    return {
        "url": config.url,
        "model": config.model,
        "method": f"POST chat completion, max_tokens={config.max_tokens}, end-to-end wall time, "
        f"{warmup} warmup probe(s) excluded",
        "samples": [asdict(s) for s in samples],
        "latency_ms": summarize([s.latency_ms for s in samples]),
        "server_ms": summarize([s.server_ms for s in samples]),
    }
