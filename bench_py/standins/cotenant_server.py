"""Stand-in co-tenant LLM: an OpenAI-compatible chat endpoint with Gemma's latency shape.

The production co-tenant (Gemma on vLLM) answers a short probe in about 190 ms, most of it
waiting on the GPU. Each "token" here is the same: a real CPU part (SHA-256 over a buffer, on
a worker thread: the scheduling, sampling and detokenizing a server does per step) and a wait
that stands for the GPU's decode step. So contention for the CPU slows it for real, as it slows
a production LLM, but only its CPU share — a busy laptop does not double it, while a real
slowdown (``POST /admin/degrade``) does. The server reports its own processing time in
``X-Server-Processing-Ms`` so a client can tell queueing and network from work.

Real vLLM sends no such header; it serves Prometheus metrics at ``GET /metrics``. So does this
server, with vLLM's names, labels and buckets (``vllm/v1/metrics/loggers.py``) through the same
library, so the gate's production route (server time from the e2e histogram's deltas) runs here.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass

import prometheus_client
from aiohttp import web

log = logging.getLogger("voxbench.standin.cotenant")

_WORDS = ("the", "model", "answers", "slowly", "when", "memory", "is", "shared", "with", "speech")
_BLOCK = b"\x5a" * 65536  # hashlib releases the GIL on buffers this size: work runs beside the loop


@dataclass
class Degradation:
    factor: float = 1.0  # multiplies the work per token
    fail: bool = False  # answer 503 to every completion
    slowdown: float = 1.0  # multiplies each completion's processing time (the work, then a wait)


def do_work(tokens: int, rounds_per_token: int) -> str:
    """Real CPU work: chained SHA-256 over a 64 KiB block, ``rounds_per_token`` per token."""
    digest = b""
    words = []
    for _ in range(tokens):
        for _ in range(rounds_per_token):
            digest = hashlib.sha256(digest + _BLOCK).digest()
        words.append(_WORDS[digest[0] % len(_WORDS)])
    return " ".join(words)


#: vLLM's buckets for its request latency histograms (vllm/v1/metrics/loggers.py).
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0)
REQUEST_LATENCY_BUCKETS += (30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class VllmMetrics:
    """The part of vLLM's /metrics a client of the co-tenant reads: request latency and queue."""

    def __init__(self, model: str) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        for collector in (prometheus_client.ProcessCollector, prometheus_client.PlatformCollector):
            collector(registry=self.registry)  # vLLM's registry carries these too
        labels, values = ["model_name", "engine"], (model, "0")

        def gauge(name: str, doc: str) -> prometheus_client.Gauge:
            return prometheus_client.Gauge(name, doc, labels, registry=self.registry).labels(*values)

        def histogram(name: str, doc: str) -> prometheus_client.Histogram:
            family = prometheus_client.Histogram(
                name, doc, labels, registry=self.registry, buckets=REQUEST_LATENCY_BUCKETS
            )
            return family.labels(*values)

        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.")
        self.queue = histogram(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request."
        )

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class CotenantServer:
    def __init__(
        self, model: str, rounds_per_token: int, gpu_ms_per_token: float = 0.0, timing_header: bool = True
    ) -> None:
        self.model = model
        self.timing_header = timing_header
        self.rounds_per_token = rounds_per_token
        self.gpu_s_per_token = gpu_ms_per_token / 1000
        self.degradation = Degradation()
        # One completion at a time, like a single-sequence LLM server.
        self._engine_lock = asyncio.Lock()
        self.metrics = VllmMetrics(model)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/admin/degrade", self.get_degrade)
        app.router.add_post("/admin/degrade", self.set_degrade)
        return app

    async def health(self, _request: web.Request) -> web.Response:
        # Health answers 200 even when degraded: that is the trap voxbench must see through.
        return web.json_response({"status": "ok", "standin": True, "model": self.model})

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def prometheus(self, _request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def get_degrade(self, _request: web.Request) -> web.Response:
        return web.json_response(asdict(self.degradation))

    async def set_degrade(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            return _error("the body must be a JSON object", 400)
        factor = body.get("factor", 1.0)
        fail = body.get("fail", False)
        slowdown = body.get("slowdown", 1.0)
        for name, value in (("factor", factor), ("slowdown", slowdown)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1.0:
                return _error(f"'{name}' must be a number >= 1 (1 = normal speed)", 400)
        if not isinstance(fail, bool):
            return _error("'fail' must be a boolean", 400)
        self.degradation = Degradation(float(factor), fail, float(slowdown))
        log.info("degradation set to %s", self.degradation)
        return web.json_response(asdict(self.degradation))

    async def chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error("the body must be JSON", 400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error("'messages' must be a non-empty list", 400)
        max_tokens = body.get("max_tokens", 16)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
            return _error("'max_tokens' must be an integer from 1 to 4096", 400)
        if self.degradation.fail:
            return _error("the model is failing (degraded by /admin/degrade)", 503)
        rounds = max(1, int(self.rounds_per_token * self.degradation.factor))
        loop = asyncio.get_running_loop()
        arrived = time.perf_counter()
        with self.metrics.waiting.track_inprogress():
            await self._engine_lock.acquire()
        try:
            with self.metrics.running.track_inprogress():
                started = time.perf_counter()
                words, cpu_s = [], 0.0
                for _ in range(max_tokens):  # one decode step per token: its CPU part, then the GPU's
                    step = time.perf_counter()
                    words.append(await loop.run_in_executor(None, do_work, 1, rounds))
                    cpu_s += time.perf_counter() - step
                    if self.gpu_s_per_token:
                        await asyncio.sleep(self.gpu_s_per_token)
                text = " ".join(words)
                # An exact latency multiple (more work alone scales less than linearly: fixed costs,
                # caches): the engine stays busy, so queued completions wait as on a slowed model.
                await asyncio.sleep((self.degradation.slowdown - 1.0) * (time.perf_counter() - started))
                finished = time.perf_counter()
            processing_ms = (finished - started) * 1000
            # Recorded before the answer leaves, so a scrape after it counts this request (vLLM's
            # e2e time runs from the request's arrival, its queue time until it is scheduled).
            self.metrics.queue.observe(started - arrived)
            self.metrics.e2e.observe(finished - arrived)
        finally:
            self._engine_lock.release()
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"] if isinstance(m, dict))
        answer = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": max_tokens,
                "total_tokens": prompt_tokens + max_tokens,
            },
        }
        headers = {
            "X-Server-Cpu-Ms": f"{cpu_s * 1000:.3f}",  # the part contention can slow (the gate benchmark reads it)
            "X-Voxbench-Standin": "cotenant-server",
        }
        if self.timing_header:
            headers["X-Server-Processing-Ms"] = f"{processing_ms:.3f}"
        return web.json_response(answer, headers=headers)


def _error(message: str, status: int) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="voxbench-standin-cotenant", description=__doc__.split("\n\n")[0])
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8000)
    cli.add_argument("--model", default="google/gemma-standin")
    cli.add_argument(
        "--rounds-per-token",
        type=int,
        default=48,
        help="SHA-256 rounds over 64 KiB per generated token: the CPU part of a step (about 2 ms here)",
    )
    cli.add_argument(
        "--gpu-ms-per-token",
        type=float,
        default=9.3,
        help="the wait that stands for the GPU's part of a decode step (16 tokens: about 150 ms)",
    )
    cli.add_argument(
        "--timing-header",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send X-Server-Processing-Ms (a stand-in extra); without it a client reads the server's time "
        "from /metrics, as from real vLLM",
    )
    return cli


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = CotenantServer(args.model, args.rounds_per_token, args.gpu_ms_per_token, args.timing_header)
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
