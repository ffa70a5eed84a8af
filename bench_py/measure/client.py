"""The streaming speech client: one request, raw timestamps, decoded audio.

Times are read from a monotonic clock just before the request is sent. ``ttfb_ms`` is the
first response byte (curl's start-transfer); ``ttfa_ms`` the first byte that carries audio
samples, after any WAV header or SSE framing. Summaries are computed elsewhere from these
raw records, never accumulated here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from bench_py.audio import OUTPUT_RATE
from bench_py.measure.decode import StreamDecodeError, WavStreamDecoder, make_decoder

#: The seed's timeouts (seconds); ``read`` bounds the silence between two network reads.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=5.0, pool=5.0)


@dataclass
class StreamResult:
    """What one streamed request produced, with raw arrival times in ms from the send."""

    status: int
    ttfb_ms: float | None
    ttfa_ms: float | None
    total_ms: float
    samples: np.ndarray
    rate: int
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (ms since send, samples in read)
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def audio_s(self) -> float:
        return len(self.samples) / self.rate

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


async def stream_speech(
    client: httpx.AsyncClient,
    url: str,
    body: dict,
    *,
    headers: dict[str, str] | None = None,
    response_format: str = "pcm",
    sse: bool = False,
) -> StreamResult:
    """POST ``body`` to ``url`` and read the audio stream to its end."""
    decoder = make_decoder(response_format, sse)
    arrivals: list[tuple[float, int]] = []
    pieces: list[np.ndarray] = []
    ttfb = ttfa = None
    status, response_headers, error = 0, {}, None
    sent = time.monotonic()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            status, response_headers = response.status_code, dict(response.headers)
            if status != 200:
                detail = (await response.aread()).decode(errors="replace")[:500]
                error = f"HTTP {status}: {detail}"
            else:
                async for chunk in response.aiter_raw():
                    now = (time.monotonic() - sent) * 1000
                    ttfb = now if ttfb is None else ttfb
                    samples = decoder.feed(chunk)
                    if len(samples):
                        ttfa = now if ttfa is None else ttfa
                        arrivals.append((now, len(samples)))
                        pieces.append(samples)
    except (httpx.HTTPError, StreamDecodeError) as failure:
        error = f"{type(failure).__name__}: {failure}"
    total = (time.monotonic() - sent) * 1000
    rate = int(response_headers.get("x-sample-rate", 0)) or OUTPUT_RATE
    if isinstance(decoder, WavStreamDecoder) and decoder.rate:
        rate = decoder.rate
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    return StreamResult(status, ttfb, ttfa, total, samples, rate, arrivals, response_headers, error)
