"""The gate's decision and its evidence: crafted probe windows, and the stand-in's real answers."""

import concurrent.futures
import json
import math
import time

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench_py.config.model import load
from bench_py.documents.models import GatePhase
from bench_py.measure.cotenant import Prober, e2e_totals, resolve_model
from bench_py.measure.gate import CotenantGate, explain, should_trip, window_p50
from bench_py.standins.cotenant_server import REQUEST_LATENCY_BUCKETS
from tests.helpers import running_server


def test_p50_of_the_window_must_pass_the_ratio():
    assert not should_trip([30, 31], 30, window=3, max_ratio=2.0)  # not enough probes yet
    assert not should_trip([30, 95, 31], 30, 3, 2.0)  # one slow probe is not a trend
    assert should_trip([30, 95, 61], 30, 3, 2.0)  # two of three over 60 ms
    assert not should_trip([95, 99, 30, 31, 30], 30, 3, 2.0)  # only the last window counts
    assert not should_trip([30, 60, 60], 30, 3, 2.0)  # exactly 2x is not over


def test_failed_probes_count_as_infinitely_slow():
    assert window_p50([None, None, 30]) == math.inf
    assert should_trip([30, None, None], 30, 3, 2.0)  # the co-tenant died


# -- why it tripped ------------------------------------------------------------------------------
# Baseline 190 ms (Gemma's), line 380 ms; a healthy path adds 5 ms.


def probe(latency, server=None, status=200):
    return {"at_s": 0.0, "latency_ms": latency, "server_ms": server, "status": status}


def test_a_window_slow_on_the_server_is_the_cotenants_own_slowdown():
    window = [probe(200, 195), probe(480, 474), probe(470, 466)]
    assert explain(window, 380, 5)["cause"] == "cotenant"
    assert explain(window, 380, 5)["server_p50_ms"] == 466


def test_a_window_slow_between_client_and_server_is_the_path():
    window = [probe(200, 195), probe(480, 190), probe(470, 200)]  # the server answered in time
    result = explain(window, 380, 5)
    assert result["cause"] == "path" and result["client_p50_ms"] == 470 and result["server_p50_ms"] == 195


def test_a_server_just_under_the_line_with_a_healthy_path_is_still_the_cotenant():
    # 378 ms on the server plus the baseline's 5 ms of path passes 380: the path did not grow.
    assert explain([probe(385, 378), probe(386, 379), probe(200, 195)], 380, 5)["cause"] == "cotenant"
    assert explain([probe(385, 378), probe(386, 379), probe(200, 195)], 380, 0)["cause"] == "path"


def test_a_window_of_mostly_failed_probes_is_unreachable():
    window = [probe(200, 195), probe(None, status=None), probe(None, status=503)]
    assert explain(window, 380, 5) == {
        "cause": "unreachable",
        "client_p50_ms": None,
        "server_p50_ms": None,
        "baseline_path_ms": 5,
    }


def test_a_server_answering_errors_counts_as_infinitely_slow_on_its_side():
    window = [probe(200, 195), probe(None, status=503), probe(480, 470)]
    assert explain(window, 380, 5)["cause"] == "cotenant"  # 503 and 470 ms: the server's p50 is 470


def test_without_server_timing_for_most_probes_the_cause_is_unknown():
    assert explain([probe(480), probe(470), probe(200, 195)], 380, 5)["cause"] == "unknown"
    assert explain([probe(480), probe(470, 465), probe(200, 195)], 380, 5)["cause"] == "path"  # 2 of 3 known


def test_a_trip_records_its_evidence_and_keeps_the_reasons_prefix(cotenant_url):
    """A real gate against the stand-in: its fail knob makes every probe a 503."""
    config = load({"gemma_mode": "parallel", "cotenant": {"url": f"{cotenant_url}/v1/chat/completions"}}).cotenant
    config = resolve_model(config)
    tripped: list[tuple[str, dict]] = []
    httpx.post(f"{cotenant_url}/admin/degrade", json={"fail": True})
    try:
        with CotenantGate(config, 190.0, 0.05, 3, 2.0, lambda r, e: tripped.append((r, e))) as gate:
            deadline = time.monotonic() + 10
            while not tripped and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        httpx.post(f"{cotenant_url}/admin/degrade", json={"fail": False})
    reason, evidence = tripped[0]
    assert reason.startswith("co-tenant gate tripped: p50 of the last 3 probes is unreachable, over 2x the baseline")
    assert reason.endswith("cause unreachable: most probes of the window failed")
    assert evidence["cause"] == "unreachable" and evidence["line_ms"] == 380.0
    assert [p["error"] for p in evidence["window"]] == ["HTTP 503"] * 3
    assert evidence["first_over_at_s"] == evidence["window"][0]["at_s"]
    assert (
        0
        < evidence["detection_delay_s"]
        == pytest.approx(evidence["tripped_at_s"] - evidence["first_over_at_s"], abs=0.001)
    )
    assert gate.results()["trip"]["reason"] == reason and gate.results()["tripped"]
    # What the runner records for the phase is what measurements.json's schema says a gate phase is.
    recorded = GatePhase.model_validate(json.loads(json.dumps({"phase": "BENCHING", **gate.results()})))
    assert recorded.trip is not None and recorded.trip.cause == "unreachable"


# -- the server's time from vLLM's /metrics --------------------------------------------------------


def vllm_exposition(engines: dict[str, tuple[list[float], int]]) -> str:
    """What vLLM's PrometheusStatLogger writes: its definitions (vllm/v1/metrics/loggers.py: names,
    documentation, labels model_name and engine, request latency buckets), through the library vLLM
    uses, one series per engine with the given observations and a running gauge."""
    registry = prometheus_client.CollectorRegistry()
    labels = ["model_name", "engine"]
    e2e = prometheus_client.Histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        labels,
        registry=registry,
        buckets=REQUEST_LATENCY_BUCKETS,
    )
    running = prometheus_client.Gauge(
        "vllm:num_requests_running", "Number of requests in model execution batches.", labels, registry=registry
    )
    for engine, (observations, now_running) in engines.items():
        for seconds in observations:
            e2e.labels("google/gemma-4-26b", engine).observe(seconds)
        running.labels("google/gemma-4-26b", engine).set(now_running)
    return prometheus_client.generate_latest(registry).decode()


def test_e2e_totals_sum_vllms_histogram_over_its_engines():
    text = vllm_exposition({"0": ([0.19, 0.21], 1), "1": ([0.5], 0)})
    count, total = e2e_totals(text)
    assert count == 3 and total == pytest.approx(0.9)


# vLLM's own example of its /metrics (docs/design/metrics.md, the lines it shows): no e2e histogram.
VLLM_DOCS_EXAMPLE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 27453.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 140.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 140.0
"""


def test_e2e_totals_are_none_without_the_histogram():
    assert e2e_totals(VLLM_DOCS_EXAMPLE) is None
    assert e2e_totals("") is None
    # vLLM's legacy label shape (model_name alone) reads as well.
    legacy = VLLM_DOCS_EXAMPLE + (
        "# TYPE vllm:e2e_request_latency_seconds histogram\n"
        'vllm:e2e_request_latency_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 140.0\n'
        'vllm:e2e_request_latency_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 28.5\n'
    )
    assert e2e_totals(legacy) == (140.0, 28.5)


@pytest.fixture(scope="module")
def vllm_like_cotenant(tmp_path_factory):
    """The stand-in without its timing header: its time is only in /metrics, as with vLLM."""
    with running_server(
        "bench_py.standins.cotenant_server", "--no-timing-header", log_dir=tmp_path_factory.mktemp("cotenant")
    ) as url:
        yield url


def test_the_standins_metrics_are_vllms_names_and_labels(vllm_like_cotenant):
    text = httpx.get(f"{vllm_like_cotenant}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in (
        ("vllm:e2e_request_latency_seconds", "histogram"),
        ("vllm:request_queue_time_seconds", "histogram"),
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
    ):
        assert families[name].type == kind
        assert {tuple(sorted(s.labels)) for s in families[name].samples} <= {
            ("engine", "model_name"),
            ("engine", "le", "model_name"),
        }
    buckets = [s.labels["le"] for s in families["vllm:e2e_request_latency_seconds"].samples if "le" in s.labels]
    assert buckets[:3] == ["0.3", "0.5", "0.8"] and buckets[-1] == "+Inf"


def test_without_the_header_the_probe_reads_its_server_time_from_metrics(vllm_like_cotenant):
    config = load({"gemma_mode": "parallel", "cotenant": {"url": f"{vllm_like_cotenant}/v1/chat/completions"}}).cotenant
    config = resolve_model(config)
    before = e2e_totals(httpx.get(f"{vllm_like_cotenant}/metrics").text)
    with httpx.Client() as client:
        prober = Prober(client, config)
        probes = [prober.probe() for _ in range(3)]
    after = e2e_totals(httpx.get(f"{vllm_like_cotenant}/metrics").text)
    assert after[0] - before[0] == 3
    for p in probes:
        assert p.server_source == "metrics" and 0 < p.server_ms <= p.latency_ms, p
    # The deltas are the histogram's own: their sum is what the server counted.
    assert sum(p.server_ms for p in probes) == pytest.approx((after[1] - before[1]) * 1000, abs=0.01)
    assert prober.metrics_note is None


def running(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "vllm:num_requests_running")
    return sum(s.value for s in family.samples)


def test_a_probe_that_shares_its_span_with_another_request_gets_no_server_time(vllm_like_cotenant):
    """Other users' requests finishing meanwhile make the delta theirs too: no server time, not a wrong one."""
    config = resolve_model(
        load({"gemma_mode": "parallel", "cotenant": {"url": f"{vllm_like_cotenant}/v1/chat/completions"}}).cotenant
    )
    body = {"model": config.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        prober = Prober(client, config)
        assert prober.probe().server_source == "metrics"
        other = pool.submit(httpx.post, config.url, json=body, timeout=30)
        while running(vllm_like_cotenant) < 1:  # the other request holds the engine: the probe queues behind it
            time.sleep(0.005)
        shared = prober.probe()
        assert other.result().status_code == 200
    assert shared.latency_ms is not None and shared.server_ms is None and shared.server_source is None


def test_the_header_wins_and_metrics_are_not_read_again(cotenant_url):
    config = resolve_model(
        load({"gemma_mode": "parallel", "cotenant": {"url": f"{cotenant_url}/v1/chat/completions"}}).cotenant
    )
    with httpx.Client() as client:
        prober = Prober(client, config)
        probes = [prober.probe() for _ in range(2)]
        scraped = e2e_totals(client.get(f"{cotenant_url}/metrics").text)
        third = prober.probe()
        assert e2e_totals(client.get(f"{cotenant_url}/metrics").text)[0] == scraped[0] + 1  # no scrape around it
    assert [p.server_source for p in [*probes, third]] == ["header"] * 3
