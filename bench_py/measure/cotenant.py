"""The co-tenant probe: a small chat completion, timed end to end. Health is latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

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
    # Where server_ms came from: "header" (X-Server-Processing-Ms), "metrics" (vLLM's e2e latency
    # histogram around the probe), None (no server-side timing for this probe).
    server_source: str | None = None


#: vLLM's histogram of each request's time from arrival to its last token (vllm/v1/metrics/loggers.py).
E2E_HISTOGRAM = "vllm:e2e_request_latency_seconds"


def e2e_totals(exposition: str) -> tuple[float, float] | None:
    """(count, sum in s) of vLLM's e2e request latency histogram in a /metrics text, summed over
    its series (one per engine); None when the text does not carry it."""
    from prometheus_client.parser import text_string_to_metric_families

    count = total = 0.0
    found = False
    for family in text_string_to_metric_families(exposition):
        if family.name != E2E_HISTOGRAM:
            continue
        for sample in family.samples:
            if sample.name == f"{E2E_HISTOGRAM}_count":
                count, found = count + sample.value, True
            elif sample.name == f"{E2E_HISTOGRAM}_sum":
                total += sample.value
    return (count, total) if found else None


def metrics_url(config: Cotenant) -> str:
    """Where a vLLM server beside ``config.url`` serves its Prometheus metrics: /metrics on the same port."""
    parsed = urlparse(config.url)
    return f"{parsed.scheme}://{parsed.netloc}/metrics"


class Prober:
    """Probes the co-tenant and tells its server-side time apart from the path to it.

    The server's time comes from the ``X-Server-Processing-Ms`` header when the server sends one
    (voxbench's stand-in does), else from vLLM's ``/metrics``: the e2e latency histogram is read
    just before and just after the probe, and a delta of exactly one request is the probe's own.
    A delta of several (other users' requests finished meanwhile) or none (the server had not
    counted it yet) gives no server time for that probe, as does a server with neither.
    """

    def __init__(self, client: httpx.Client, config: Cotenant) -> None:
        self._client, self._config = client, config
        self._header = False  # the server sent the header once: /metrics is not needed
        self._metrics: bool | None = None  # None: not tried yet
        self.metrics_note: str | None = None  # why /metrics is not used, once known

    def _scrape(self) -> tuple[float, float] | None:
        url = metrics_url(self._config)
        try:
            response = self._client.get(url, timeout=self._config.timeout_s)
            totals = e2e_totals(response.text) if response.status_code == 200 else None
            note = f"{url} answered HTTP {response.status_code}" if response.status_code != 200 else None
        except (httpx.HTTPError, ValueError) as error:
            totals, note = None, f"{url} could not be read ({type(error).__name__}: {error})"
        if totals is None and self._metrics is None:
            self._metrics = False
            self.metrics_note = note or f"{url} carries no {E2E_HISTOGRAM}"
        elif totals is not None:
            self._metrics = True
        return totals

    def probe(self) -> Probe:
        before = self._scrape() if not self._header and self._metrics is not False else None
        probe = probe_once(self._client, self._config)
        if probe.server_ms is not None:
            self._header = True
            return probe
        if before is None or probe.latency_ms is None:
            return probe
        after = self._scrape()
        if after is not None and after[0] - before[0] == 1:
            probe.server_ms, probe.server_source = round((after[1] - before[1]) * 1000, 3), "metrics"
        return probe


class CotenantUnreachable(RuntimeError):
    """The co-tenant did not answer; the message says where and how it failed."""


def resolve_model(config: Cotenant, timeout_s: float = 10.0) -> Cotenant:
    """The co-tenant with its model named: ``cotenant.model``, or the one model its server lists at
    ``GET /v1/models`` (vLLM serves one under the name it was started with)."""
    if config.model:
        return config
    parsed = urlparse(config.url)
    url = f"{parsed.scheme}://{parsed.netloc}/v1/models"
    try:
        response = httpx.get(url, timeout=timeout_s)
        models = [entry.get("id") for entry in response.json().get("data", [])] if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError, AttributeError) as error:
        raise CotenantUnreachable(
            f"the co-tenant's model list {url} did not answer ({type(error).__name__}: {error})"
        ) from None
    if len(models) != 1:
        raise CotenantUnreachable(
            f"the co-tenant at {url} lists {models or 'no model'}: name the one to probe in cotenant.model"
        )
    return config.model_copy(update={"model": models[0]})


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
    return Probe(sent, latency, float(server) if server else None, 200, None, "header" if server else None)


def measure_latency(config: Cotenant, probes: int, warmup: int) -> dict[str, Any]:
    """``warmup`` untimed probes, then ``probes`` timed ones; raw samples and their summary.

    Raises :class:`CotenantUnreachable` when any timed probe fails: a baseline with holes is no
    baseline.
    """
    with httpx.Client() as client:
        prober = Prober(client, config)
        for _ in range(warmup):
            prober.probe()
        samples = [prober.probe() for _ in range(probes)]
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
        "server_source": next((s.server_source for s in samples if s.server_source), None),
        "metrics_note": prober.metrics_note,
    }


def recover_latency(
    config: Cotenant, baseline_p50: float, max_ratio: float, within_s: float, window: int = 3, interval_s: float = 0.5
) -> dict[str, Any]:
    """Probe until the p50 of the last ``window`` probes is within ``max_ratio`` × baseline, or ``within_s`` passes.

    Returns whether it recovered, how long it took (from the first probe) and every probe.
    """
    probes: list[Probe] = []
    started = time.monotonic()
    with httpx.Client() as client:
        while True:
            probes.append(probe_once(client, config))
            answered = [p.latency_ms for p in probes[-window:] if p.latency_ms is not None]
            if len(answered) == window and statistics.median(answered) <= max_ratio * baseline_p50:
                return {
                    "ok": True,
                    "time_to_recover_s": round(time.monotonic() - started, 3),
                    "p50_ms": statistics.median(answered),
                    "ratio": statistics.median(answered) / baseline_p50,
                    "samples": [asdict(p) for p in probes],
                }
            if time.monotonic() - started > within_s:
                p50 = statistics.median(answered) if answered else None
                return {
                    "ok": False,
                    "time_to_recover_s": None,
                    "p50_ms": p50,
                    "ratio": p50 / baseline_p50 if p50 else None,
                    "samples": [asdict(p) for p in probes],
                    "reason": f"the co-tenant did not come back within {max_ratio:g}x its baseline "
                    f"{baseline_p50:.0f} ms in {within_s:g} s",
                }
            time.sleep(interval_s)


def wait_answering(config: Cotenant, timeout_s: float, interval_s: float = 1.0) -> float | None:
    """Seconds until the co-tenant answers a completion again (None: it did not within ``timeout_s``)."""
    started = time.monotonic()
    with httpx.Client() as client:
        while time.monotonic() - started < timeout_s:
            if probe_once(client, config).latency_ms is not None:
                return time.monotonic() - started
            time.sleep(interval_s)
    return None


class ControlError(RuntimeError):
    """The co-tenant could not be stopped or started; the message says how it failed."""


def control_cotenant(kind: str, name: str | None, action: str, docker_url: str | None = None) -> None:
    """Stop or start the co-tenant (a container or a systemd unit) for pause-gemma."""
    import subprocess

    if action not in ("stop", "start") or kind == "none" or not name:
        raise ControlError(f"cannot {action} the co-tenant: cotenant.control is {kind}/{name}")
    if kind == "systemd":
        result = subprocess.run(["systemctl", action, name], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ControlError(f"systemctl {action} {name} failed: {result.stderr.strip()}")
        return
    import docker.errors

    from bench_py.engines.docker_client import docker_client

    client = docker_client(docker_url)
    try:
        container = client.containers.get(name)
        container.stop(timeout=30) if action == "stop" else container.start()
    except docker.errors.DockerException as error:
        raise ControlError(f"docker {action} {name} failed: {error}") from None
