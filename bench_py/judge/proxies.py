"""Objective proxies shown beside the verdict, never inside it.

For every saved take: speaker similarity to the reference (the one scorer in
:mod:`bench_py.judge.similarity`), intelligibility as word error rate of an ASR transcript
against the sentence (pocketsphinx in the embedded default; any :class:`Asr` plugs in),
integrated loudness (EBU R128, ffmpeg's ebur128 filter), and duration against the other engine.
"""

from __future__ import annotations

import re
import statistics
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.signal import resample_poly

from bench_py.audio import Pcm, read_wav_file
from bench_py.documents.models import Measurements
from bench_py.files import atomic_write_json
from bench_py.judge import ffmpeg
from bench_py.judge.similarity import ReferenceScorer, SimilarityUnavailable

PROXIES = "proxies.json"
ASR_RATE = 16_000


class Asr(Protocol):
    name: str

    def transcribe(self, pcm: Pcm) -> str: ...


class PocketSphinxAsr:
    """CMU PocketSphinx 5 with its bundled US English model: offline, CPU, about real time x10."""

    def __init__(self) -> None:
        from importlib.metadata import version

        from pocketsphinx import Decoder

        self.name = f"pocketsphinx {version('pocketsphinx')} (en-us)"
        self._decoder = Decoder(samprate=ASR_RATE, logfn="/dev/null")

    def transcribe(self, pcm: Pcm) -> str:
        samples = to_rate(pcm, ASR_RATE)
        self._decoder.start_utt()
        self._decoder.process_raw(samples.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""


def to_rate(pcm: Pcm, rate: int) -> np.ndarray:
    if pcm.rate == rate:
        return pcm.samples.astype(np.int16)
    divisor = np.gcd(rate, pcm.rate)
    resampled: np.ndarray = resample_poly(pcm.samples.astype(np.float64), rate // divisor, pcm.rate // divisor)
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


_NUMBERS = {  # enough for the default sentences; ASR engines write numbers as words
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
    "8": "eight", "9": "nine", "10": "ten",
}  # fmt: skip


def normalize_words(text: str) -> str:
    """Lower case, digits as words, hyphens as spaces, no punctuation: what WER compares."""
    words = re.sub(r"[-/]", " ", text.lower())
    words = re.sub(r"[^a-z0-9' ]", " ", words)
    return " ".join(_NUMBERS.get(w, w) for w in words.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    reference, hypothesis = normalize_words(reference), normalize_words(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return float(jiwer.wer(reference, hypothesis or "<silence>"))


def loudness_lufs(path: Path) -> float | None:
    """Integrated loudness by ffmpeg's EBU R128 meter (None for silence or a file ffmpeg refuses)."""
    return loudness_many([path])[0]


def _lufs(found: str) -> float | None:
    return None if found == "-inf" else float(found)


#: The summary each meter prints when its input ends (ffmpeg may set a graph up twice: the last counts).
_SUMMARY = re.compile(r"\[Parsed_ebur128_(\d+) @ [^\]]*\] Summary:\s+Integrated loudness:\s+I:\s+(-?[\d.]+|-inf) LUFS")


def loudness_many(paths: list[Path]) -> list[float | None]:
    """:func:`loudness_lufs` of each take, metered by one ffmpeg per batch rather than one per take;
    a batch ffmpeg refuses (a broken take) is metered take by take, so only the broken one is None."""
    found: list[float | None] = []
    for batch in ffmpeg.batches(paths):
        result = ffmpeg.per_input(batch, "ebur128", [["-f", "null", "-"]] * len(batch), loglevel="info")
        summaries = {int(index): value for index, value in _SUMMARY.findall(result.stderr)}
        if result.returncode == 0 and sorted(summaries) == list(range(len(batch))):
            found += [_lufs(summaries[index]) for index in range(len(batch))]
        elif len(batch) > 1:
            found += [loudness_lufs(path) for path in batch]
        else:
            found.append(None)
    return found


@lru_cache(maxsize=1)
def _default_asr() -> Asr:
    return PocketSphinxAsr()


def _scorer(reference: Pcm | None) -> ReferenceScorer | str | None:
    """The similarity scorer against the run's reference; why not, when it cannot load here."""
    if reference is None:
        return None
    scorer = ReferenceScorer(reference)
    try:
        scorer.anchor()
    except SimilarityUnavailable as error:  # the judge extra (resemblyzer, torch) is not installed
        return f"speaker similarity unavailable: {error}"
    except ValueError:
        pass  # too little speech in the reference: each take says so
    return scorer


def compute(run_dir: Path, measurements: Measurements, asr: Asr | None = None) -> dict[str, Any]:
    """Proxies for every saved take of a run, and their means per side and condition. The loudness
    meter (an ffmpeg per batch of takes) and the speaker embeddings run on other threads while the
    ASR decodes here."""
    run_dir = Path(run_dir)
    bench = measurements.bench
    utterances = (bench.utterances if bench else None) or []
    reference_path = run_dir / "reference.wav"
    reference = read_wav_file(str(reference_path)) if reference_path.is_file() else None
    scorer = _scorer(reference)
    asr = asr or _default_asr()
    saved = [
        (side, record, str(record.extra("wav")))
        for side, records in sorted((bench.records if bench else {}).items())
        for record in records
        if record.extra("wav") and not record.warmup  # the v0 schema does not name "wav"
    ]
    pcms = [read_wav_file(str(run_dir / wav)) for _, _, wav in saved]
    with ThreadPoolExecutor(max_workers=2) as pool:
        loudness = pool.submit(loudness_many, [run_dir / wav for _, _, wav in saved])
        similarities = pool.submit(scorer.score_many, pcms) if isinstance(scorer, ReferenceScorer) else None
        transcripts = [asr.transcribe(pcm) for pcm in pcms]
        scored = similarities.result() if similarities else [None] * len(saved)
        metered = loudness.result()
        takes = []
        durations: dict[tuple[str, int], dict[str, float]] = {}
        for (side, record, wav), pcm, transcript, lufs, similarity in zip(
            saved, pcms, transcripts, metered, scored, strict=True
        ):
            text = utterances[record.utterance] if record.utterance < len(utterances) else ""
            take: dict[str, Any] = {
                "side": side,
                "condition": record.condition,
                "utterance": record.utterance,
                "wav": wav,
                "duration_s": round(pcm.duration_s, 4),
                "transcript": transcript,
                "wer": round(word_error_rate(text, transcript), 4),
                "loudness_lufs": lufs,
                "similarity": round(similarity, 4) if isinstance(similarity, float) else None,
            }
            if isinstance(similarity, str):
                take["similarity_error"] = similarity
            durations.setdefault((record.condition, record.utterance), {})[side] = pcm.duration_s
            takes.append(take)
    for take in takes:
        pair = durations[(take["condition"], take["utterance"])]
        other = "incumbent" if take["side"] == "candidate" else "candidate"
        take["duration_ratio"] = round(pair[take["side"]] / pair[other], 4) if pair.get(other) else None
    summary: dict[str, dict[str, Any]] = {}
    for side in sorted({t["side"] for t in takes}):
        for condition in sorted({t["condition"] for t in takes}):
            chosen = [t for t in takes if t["side"] == side and t["condition"] == condition]
            if chosen:
                summary.setdefault(side, {})[condition] = {
                    key: _mean([t[key] for t in chosen])
                    for key in ("similarity", "wer", "loudness_lufs", "duration_ratio")
                }
    return {
        "asr": asr.name,
        "similarity": scorer if isinstance(scorer, str) else "resemblyzer GE2E cosine to the reference clip",
        "loudness": "EBU R128 integrated (ffmpeg ebur128)",
        "note": "objective proxies: reported beside the verdict, never used by the rule",
        "takes": takes,
        "summary": summary,
    }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def write(run_dir: Path, asr: Asr | None = None) -> dict[str, Any]:
    from bench_py import documents

    measurements = documents.load_measurements(Path(run_dir) / documents.FILE_NAMES["measurements"])
    data = compute(run_dir, measurements, asr)
    atomic_write_json(Path(run_dir) / PROXIES, data)
    return data
