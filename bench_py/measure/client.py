"""The streaming speech client: one request, raw timestamps, decoded audio.

Every time is read from the monotonic clock, relative to a reading taken just before the
request is sent:

* ``ttfb_ms`` — the first response byte (curl's start-transfer);
* ``ttfa_ms`` — the first byte that carries audio samples, after any WAV header or SSE framing
  (the seed's TTFA);
* ``ttfa_audible_ms`` — the read that brought the first sample at or above the audibility
  threshold (``audible_threshold_dbfs`` of full scale, recorded with the result);
* ``total_ms`` — the end of the stream.

The decoder is chosen from the response's Content-Type and what the request asked for; a
response that contradicts the request is an error, never a guess. Summaries are computed
elsewhere from these raw records.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench_py.audio import OUTPUT_RATE
from bench_py.measure import decode, netstamp
from bench_py.measure.decode import Decoder, StreamDecodeError, WavStreamDecoder, decoder_for_response
from bench_py.measure.timing import chunk_stats, underruns

#: A sample at or above this level (dBFS of full scale) is audible: far above dither, below speech.
AUDIBLE_THRESHOLD_DBFS = -40.0


@dataclass
class StreamResult:
    """What one streamed request produced, with raw arrival times in ms from the send."""

    sent_at: float  # monotonic seconds, read just before the request was sent
    status: int
    ttfb_ms: float | None
    ttfa_ms: float | None
    ttfa_audible_ms: float | None
    total_ms: float
    samples: np.ndarray
    rate: int
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (ms since send, samples in read)
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False
    audible_threshold_dbfs: float = AUDIBLE_THRESHOLD_DBFS
    clock: str = "monotonic"  # "kernel": arrivals are the kernel's receive stamps (see netstamp)
    delivery: str | None = None  # "whole" (a sized body) or "streamed" (chunked), as the response was sent
    rate_source: str = "default"  # where the rate came from: headers, wav header, documented, default
    body_text: str | None = None  # the start of a refusal's body (a non-200 answer), as the server wrote it

    @property
    def audio_s(self) -> float:
        return len(self.samples) / self.rate

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def rtf(self) -> float | None:
        """Synthesis time over audio duration (below 1: faster than real time)."""
        return self.total_ms / 1000 / self.audio_s if self.ok and self.audio_s > 0 else None

    def metrics(self) -> dict[str, Any]:
        """Every per-request figure, computed from the raw arrivals."""
        stalls, stall_ms = underruns(self.arrivals, self.rate)
        return {
            "ttfb_ms": self.ttfb_ms,
            "ttfa_ms": self.ttfa_ms,
            "ttfa_audible_ms": self.ttfa_audible_ms,
            "total_ms": self.total_ms,
            "audio_s": self.audio_s,
            "rtf": self.rtf,
            "audible_threshold_dbfs": self.audible_threshold_dbfs,
            "chunks": chunk_stats(self.arrivals, self.rate),
            # The raw timeline (ms since send, samples in that read): every chunk figure derives from it.
            "arrivals": [[round(ms, 3), n] for ms, n in self.arrivals],
            "clock": self.clock,
            "delivery": self.delivery,
            "rate_source": self.rate_source,
            "underruns": stalls,
            "underrun_ms": stall_ms,
        }


async def stream_speech(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    response_format: str = "pcm",
    sse: bool | None = False,
    sample_format: str = "s16le",
    audible_threshold_dbfs: float = AUDIBLE_THRESHOLD_DBFS,
    rate: int | None = None,
    shape_from_headers: bool = False,
) -> StreamResult:
    """POST ``body`` to ``url`` and read the audio stream to its end.

    ``sse``: True when the request asked for server-sent events, False for raw bytes, None when
    the server chooses (then its Content-Type decides). ``rate``: raw PCM's rate when the response
    does not say it (the engine's documented rate). ``shape_from_headers``: the rate, channels and
    sample format come from ``X-Sample-Rate``, ``X-Channels``, ``X-Format``, and must be there.
    """
    threshold = 32768.0 * 10 ** (audible_threshold_dbfs / 20)
    arrivals: list[tuple[float, int]] = []
    pieces: list[np.ndarray] = []
    ttfb = ttfa = audible = None
    status, response_headers, error, timed_out = 0, {}, None, False
    body_text = None
    decoder: Decoder | None = None
    shape = None
    delivery = None
    clock = netstamp.Clock()
    sent = time.monotonic()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            status, response_headers = response.status_code, dict(response.headers)
            if status != 200:
                body_text = (await response.aread()).decode(errors="replace")[:2000]
                error = f"HTTP {status}: {server_words(body_text)}"
            else:
                delivery = "whole" if "content-length" in response.headers else "streamed"
                if shape_from_headers:
                    shape = decode.shape_from_headers(response.headers)
                    decoder = decode.shaped_decoder(shape)
                else:
                    decoder = decoder_for_response(
                        response.headers.get("content-type"), response_format, sse, sample_format
                    )
                async for chunk in response.aiter_raw():
                    # When the bytes reached this machine (the kernel's stamp), not when we read them.
                    now = (clock.arrival(response) - sent) * 1000
                    ttfb = now if ttfb is None else ttfb
                    samples = decoder.feed(chunk)
                    if len(samples):
                        ttfa = now if ttfa is None else ttfa
                        if audible is None and np.any(np.abs(samples.astype(np.int32)) >= threshold):
                            audible = now
                        arrivals.append((now, len(samples)))
                        pieces.append(samples)
    except httpx.TimeoutException as failure:
        timed_out = True
        phase = "the first byte" if ttfb is None else f"more audio after {sum(n for _, n in arrivals)} samples"
        error = f"{type(failure).__name__}: no answer within the timeout while waiting for {phase}"
    except (httpx.HTTPError, StreamDecodeError) as failure:
        error = f"{type(failure).__name__}: {failure}"
    total = (time.monotonic() - sent) * 1000
    if shape is not None:
        rate, rate_source = shape.rate, "headers"
    elif isinstance(decoder, WavStreamDecoder) and decoder.rate:
        rate, rate_source = decoder.rate, "wav header"
    elif rate:
        rate_source = "documented"
    else:
        rate, rate_source = OUTPUT_RATE, "default"
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    return StreamResult(
        sent,
        status,
        ttfb,
        ttfa,
        audible,
        total,
        samples,
        rate,
        arrivals,
        response_headers,
        error,
        timed_out,
        audible_threshold_dbfs,
        "kernel" if clock.kernel else "monotonic",
        delivery,
        rate_source,
        body_text,
    )


def server_words(body: str) -> str:
    """A refusal in the server's own words: vLLM's ``{"error": {"message": ...}}``, else the body's start."""
    try:
        return str(json.loads(body)["error"]["message"])[:500]
    except (ValueError, KeyError, TypeError):
        return body[:300]


def speak_once(request: Any, timeout_s: float) -> StreamResult:
    """One request outside the timed loops (the sanity check, the cloning probe, the preset sweep),
    decoded as the timed ones are: the request's own format, rate and framing, never a guess."""
    import asyncio

    async def once() -> StreamResult:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            return await stream_request(client, request)

    return asyncio.run(once())


async def stream_request(
    client: httpx.AsyncClient, request: Any, audible_threshold_dbfs: float = AUDIBLE_THRESHOLD_DBFS
) -> StreamResult:
    """:func:`stream_speech` for a target's :class:`~bench_py.engines.http.SpeechRequest`."""
    return await stream_speech(
        client,
        request.url,
        request.body,
        headers=request.headers,
        response_format=request.response_format,
        sse=request.sse,
        sample_format=request.sample_format,
        audible_threshold_dbfs=audible_threshold_dbfs,
        rate=request.rate,
        shape_from_headers=request.shape_from_headers,
    )
