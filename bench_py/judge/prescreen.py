"""The optional hosted-API prescreen: a few sentences cloned by Mistral's hosted Voxtral, scored
against the reference by the shared speaker-similarity scorer, before any host work.

If every take is far from the reference, voxbench recommends stopping here: if even the hosted
model (which can clone) misses the voice, the clip or the voice is the problem. A pass never
green-lights anything: the open weights under test cannot clone at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench_py.audio import Pcm, read_wav_file
from bench_py.config.model import Config
from bench_py.engines.http import MistralHostedTarget
from bench_py.files import atomic_write_json
from bench_py.measure.client import stream_speech

CAVEAT = (
    "A pass never green-lights the swap: the hosted model clones, the open weights under test cannot "
    "(their cloned condition falls back to the closest preset voice)."
)


class PrescreenError(RuntimeError):
    """The prescreen could not run (no key, the API refused); the message says why."""


def plan(config: Config) -> dict[str, Any]:
    """What would be sent, and what it would cost, before anything is sent."""
    texts = config.bench.utterances[: config.prescreen.utterances]
    characters = sum(len(t) for t in texts)
    return {
        "url": config.prescreen.url,
        "model": config.prescreen.model,
        "texts": texts,
        "characters": characters,
        "estimated_usd": round(characters / 1000 * config.prescreen.usd_per_1k_characters, 6),
        "price": f"{config.prescreen.usd_per_1k_characters:g} USD per 1000 characters (configured)",
    }


def _key(config: Config) -> str:
    path = Path(config.prescreen.key_file).expanduser()
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise PrescreenError(f"cannot read the API key file {path}: {error.strerror}") from None
    if not key:
        raise PrescreenError(f"the API key file {path} is empty")
    return key


async def _synthesize(target: MistralHostedTarget, texts: list[str], timeout_s: float) -> list[Pcm]:
    takes = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0)) as client:
        for text in texts:
            request = target.request(text, "cloned")
            result = await stream_speech(
                client, request.url, request.body, headers=request.headers, response_format=request.response_format,
                sse=request.sse, sample_format=request.sample_format,
            )  # fmt: skip
            if not result.ok:
                raise PrescreenError(
                    f"the hosted API did not return audio for {text[:40]!r}: {result.error or result.status}"
                )
            takes.append(Pcm(result.samples, result.rate))
    return takes


def run(
    config: Config,
    reference_wav: Path,
    out_dir: Path,
    *,
    confirm: Callable[[dict[str, Any]], bool],
    answer: Callable[[str], str],
    similarity: Callable[[Pcm, Pcm], float] | None = None,
) -> dict[str, Any]:
    """Estimate, ask, send, score, recommend, ask again, record. Returns the record written."""
    estimate = plan(config)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    record: dict[str, Any] = {"at": stamp, "plan": estimate, "caveat": CAVEAT}
    path = Path(out_dir) / f"prescreen-{stamp}.json"
    if not confirm(estimate):
        record.update(sent=False, recommendation=None, answer="declined before sending")
        atomic_write_json(path, record)
        return {**record, "file": str(path)}
    target = MistralHostedTarget(config.prescreen.url, config.prescreen.model, "", str(reference_wav), key=_key(config))
    takes = asyncio.run(_synthesize(target, estimate["texts"], config.prescreen.timeout_s))
    if similarity is None:
        from bench_py.judge.similarity import speaker_similarity

        similarity = speaker_similarity
    reference = read_wav_file(str(reference_wav))
    scores = [round(similarity(take, reference), 4) for take in takes]
    threshold = config.prescreen.similarity_threshold
    recommend_abort = all(score < threshold for score in scores)
    recommendation = (
        f"abort: every hosted take is below {threshold:g} similarity to the reference; check the clip first"
        if recommend_abort
        else f"go on: at least one hosted take reaches {threshold:g}"
    )
    given = answer(recommendation) if recommend_abort else "continue"
    record.update(
        sent=True,
        similarities=scores,
        threshold=threshold,
        durations_s=[round(t.duration_s, 3) for t in takes],
        recommendation="abort" if recommend_abort else "continue",
        reason=recommendation,
        answer=given,
        proceed=given != "abort",
    )
    atomic_write_json(path, record)
    return {**record, "file": str(path)}
