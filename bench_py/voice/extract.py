"""Phase A0: from a film and its subtitles to ranked reference clips of one speaker.

parse the subtitles (format detected, with the reason) → speech regions (subtitle turns refined
by an energy voice-activity detector; silence gaps split them; where cues are not turns, speech
is followed across them) → which regions are the target (named spans, or the cluster closest to
an example clip, or a cluster the user picks) → merge adjacent regions into 5–15 s segments,
dropping any that overlap another speaker, music or background voices → when too few reach the
minimum, join the target's cleanest short regions into references (:mod:`bench_py.voice.joined`)
→ rank all on one scale by speaker similarity (the shared scorer in
:mod:`bench_py.judge.similarity`) and quality (SNR, clipping, length) → cut the best with ffmpeg
(input seeking), loudness-normalized → say what was found (:mod:`bench_py.voice.findings`).

Nothing is written outside the output directory: clip names come from integers only
(``<start_s>-<end_s>.wav``, ``-<k>`` on a clash) and every path is resolved and checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np

from bench_py.audio import Pcm, read_wav_file
from bench_py.voice import findings, joined, vtt
from bench_py.voice.clips import ExtractError, clip_name, cut, cut_joined, inside, load_audio, write_representatives
from bench_py.voice.references import sha256_file
from bench_py.voice.speech import ANALYSIS_RATE, MixedCheck, Region, frame_levels, regions, speech_frames

MIN_SEGMENT_S, MAX_SEGMENT_S = 5.0, 15.0
MERGE_GAP_S = 1.0
CANDIDATES = "candidates.json"


@dataclass
class Candidate:
    start: float
    end: float
    speaker: str | None
    similarity: float
    snr_db: float
    clipped: float
    score: float
    lines: list[int]
    file: str | None = None
    rank: int | None = None
    kind: str = "single"  # single: one stretch of the film; joined: short regions with silences between
    spans: list[list[float]] = field(default_factory=list)  # the film spans it is made of, in order


def _embedders() -> tuple[Callable[[Pcm], np.ndarray], Callable[[list[Pcm]], list[Any]]]:
    from bench_py.judge.similarity import embed
    from bench_py.voice.embedding import embed_many

    return embed, embed_many


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class _Stretch(TypedDict):
    """Where a run of regions lies: its bounds in the film (s) and the subtitle lines it covers."""

    start: float
    end: float
    lines: list[int]


def _slice(samples: np.ndarray, start: float, end: float) -> Pcm:
    return Pcm(samples[int(start * ANALYSIS_RATE) : int(end * ANALYSIS_RATE)], ANALYSIS_RATE)


REGION_EMBED_S = 2.4  # who speaks is plain in 2.4 s; longer regions are embedded on their middle


def _middle(region: Region) -> tuple[float, float]:
    spare = max(0.0, (region.end - region.start - REGION_EMBED_S) / 2)
    return region.start + spare, region.end - spare


def embed_regions(found: list[Region], samples: np.ndarray, embed_many: Callable[[list[Pcm]], list[Any]]) -> None:
    """One embedding per region (of its middle 2.4 s at most), in batches (None: too little speech
    once silence is trimmed)."""
    for region, vector in zip(found, embed_many([_slice(samples, *_middle(r)) for r in found]), strict=True):
        region.embedding = vector


def cluster(found: list[Region], threshold: float = 0.3) -> dict[int, list[Region]]:
    """Agglomerative clustering of region embeddings (average linkage, cosine distance)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    usable = [r for r in found if r.embedding is not None]
    if len(usable) < 2:
        for r in usable:
            r.cluster = 1
        return {1: usable} if usable else {}
    matrix = np.stack([r.embedding for r in usable])
    labels = fcluster(linkage(matrix, method="average", metric="cosine"), t=threshold, criterion="distance")
    groups: dict[int, list[Region]] = {}
    for region, label in zip(usable, labels, strict=True):
        region.cluster = int(label)
        groups.setdefault(int(label), []).append(region)
    # Number clusters by size, largest first, so "cluster 1" means the same thing in every listing.
    ordered = sorted(groups.values(), key=lambda g: (-sum(r.end - r.start for r in g), g[0].start))
    renumbered = {}
    for number, group in enumerate(ordered, start=1):
        for region in group:
            region.cluster = number
        renumbered[number] = group
    return renumbered


def merge(chosen: list[Region], everyone: list[Region]) -> list[list[Region]]:
    """Adjacent chosen regions (gap ≤ 1 s, nobody else in between) into runs of at most 15 s."""
    chosen_ids = {id(r) for r in chosen}
    ordered = sorted(everyone, key=lambda r: r.start)
    runs: list[list[Region]] = []
    current: list[Region] = []
    for region in ordered:
        if id(region) not in chosen_ids:
            if current and region.start < current[-1].end + MERGE_GAP_S:
                runs.append(current)
                current = []
            continue
        if current and (region.start - current[-1].end > MERGE_GAP_S or region.end - current[0].start > MAX_SEGMENT_S):
            runs.append(current)
            current = []
        current.append(region)
    if current:
        runs.append(current)
    return runs


def quality(samples: np.ndarray, start: float, end: float, floor_db: float) -> tuple[float, float]:
    """(SNR in dB over the film's noise floor, clipped fraction) of a stretch."""
    piece = _slice(samples, start, end).samples.astype(np.float32)
    level = 10 * np.log10(float(np.mean((piece / 32768.0) ** 2)) + 1e-10)
    clipped = float(np.mean(np.abs(piece) >= 32000)) if len(piece) else 0.0
    return level - floor_db, clipped


def score(similarity: float, snr: float, clipped: float, length_s: float, joins: int = 0) -> float:
    """One scale for every candidate: similarity first, a little for SNR and a length near 10 s,
    minus clipping, and a hair per join (a continuous stretch wins a tie)."""
    length_fit = 1.0 - min(abs(length_s - 10.0) / 10.0, 1.0)
    snr_part = 0.05 * min(max(snr, 0.0), 30.0) / 30.0
    return similarity + snr_part + 0.02 * length_fit - 2.0 * clipped - joined.JOIN_PENALTY * joins


def rank(
    runs: list[list[Region]], samples: np.ndarray, floor_db: float, target: np.ndarray,
    embed_many: Callable[[list[Pcm]], list[Any]], min_s: float = MIN_SEGMENT_S, top: int = 5,
) -> tuple[list[Candidate], list[dict[str, Any]], dict[int, list[Region]]]:  # fmt: skip
    """Score each single stretch of ``min_s``–15 s; the candidates and the rejected with reasons
    (``why``: a code that findings count, ``reason``: the sentence). When the regions are already
    embedded, only the ``3 * top`` stretches whose regions sound most like the target are embedded
    whole and scored."""
    candidates: list[Candidate] = []
    rejected: list[dict[str, Any]] = []
    usable: list[tuple[list[Region], _Stretch]] = []
    runs_of: dict[int, list[Region]] = {}
    for run in runs:
        start, end = run[0].start, run[-1].end
        where: _Stretch = {"start": start, "end": end, "lines": sorted({r.line for r in run})}
        if any(r.overlapped for r in run):
            rejected.append({**where, "why": "overlap", "reason": "overlaps another speaker or music"})
        elif any(r.background for r in run):
            rejected.append({**where, "why": "background", "reason": "voices or noise murmur under it"})
        elif end - start < min_s:
            rejected.append({**where, "why": "short", "reason": f"{end - start:.1f} s is under {min_s:g} s"})
        else:
            usable.append((run, where))
    if len(usable) > 3 * top and all(r.embedding is not None for run, _ in usable for r in run):
        # Coarse to fine: the mean of a stretch's region embeddings picks the few worth embedding whole.
        def rough(run: list[Region]) -> float:
            return _cosine(np.mean([r.embedding for r in run], axis=0), target)

        usable = sorted(usable, key=lambda item: -rough(item[0]))[: 3 * top]
    vectors = embed_many([_slice(samples, w["start"], w["end"]) for _, w in usable])
    for (run, where), vector in zip(usable, vectors, strict=True):
        start, end = where["start"], where["end"]
        if vector is None:
            rejected.append(
                {**where, "why": "little_speech", "reason": "under 0.5 s of speech once silence is trimmed"}
            )
            continue
        similarity = _cosine(vector, target)
        snr, clipped = quality(samples, start, end, floor_db)
        candidates.append(
            Candidate(float(start), float(end), run[0].speaker, round(similarity, 4), round(float(snr), 1),
                      round(clipped, 5), round(score(similarity, snr, clipped, end - start), 4), where["lines"],
                      spans=[[float(start), float(end)]])
        )  # fmt: skip
        runs_of[id(candidates[-1])] = run
    return candidates, rejected, runs_of


def verify(
    candidates: list[Candidate], runs_of: dict[int, list[Region]], checker: MixedCheck, top: int,
    rejected: list[dict[str, Any]],
) -> list[Candidate]:  # fmt: skip
    """The best single stretches with no other voice inside (checked best first, only as many as
    needed); the rest are rejected with the reason."""
    ordered = sorted(candidates, key=lambda c: (-c.score, c.start))
    kept: list[Candidate] = []
    at = 0
    while at < len(ordered) and len(kept) < top:
        batch = ordered[at : at + top - len(kept) + 2]
        at += len(batch)
        checker.mark([r for c in batch for r in runs_of[id(c)]])
        for candidate in batch:
            if any(r.mixed for r in runs_of[id(candidate)]):
                where = {"start": candidate.start, "end": candidate.end, "lines": candidate.lines}
                rejected.append(
                    {**where, "why": "mixed", "reason": "another voice in it (its likeness drops along it)"}
                )
            else:
                kept.append(candidate)
                for region in runs_of[id(candidate)]:
                    region.similarity = -1.0  # in a single clip: not joined again
    return kept


def join_short(
    chosen: list[Region], samples: np.ndarray, floor_db: float, target: np.ndarray,
    embed_many: Callable[[list[Pcm]], list[Any]], count: int, min_s: float, checker: MixedCheck,
) -> tuple[list[Candidate], dict[str, Any]]:  # fmt: skip
    """Joined references from the target's cleanest short regions (:mod:`bench_py.voice.joined`),
    and what was there to join."""
    pieces = [r for r in joined.usable(chosen, set()) if r.similarity != -1.0]
    missing = [r for r in pieces if r.embedding is None]
    for region, vector in zip(missing, embed_many([_slice(samples, r.start, r.end) for r in missing]), strict=True):
        region.embedding = vector
    pool = joined.likely(pieces, target)
    checker.mark(pool)
    clips = joined.groups([p for p in pool if not p.mixed], count, min_s, MAX_SEGMENT_S)
    vectors = embed_many([joined.audio(samples, ANALYSIS_RATE, clip) for clip in clips])
    out = []
    for clip, vector in zip(clips, vectors, strict=True):
        if vector is None:
            continue
        spans = [[float(p.start), float(p.end)] for p in clip]
        similarity = _cosine(vector, target)
        qualities = [quality(samples, a, b, floor_db) for a, b in spans]
        snr, clipped = float(np.mean([q[0] for q in qualities])), max(q[1] for q in qualities)
        length = joined.duration(spans)
        out.append(
            Candidate(spans[0][0], spans[-1][1], clip[0].speaker, round(similarity, 4), round(snr, 1),
                      round(clipped, 5), round(score(similarity, snr, clipped, length, len(clip) - 1), 4),
                      sorted({p.line for p in clip}), kind="joined", spans=spans)
        )  # fmt: skip
    clean = [p for p in pieces if not p.mixed]
    found = {"clean_regions": len(clean), "clean_speech_s": round(sum(r.end - r.start for r in clean), 1)}
    return out, found


@dataclass
class Extraction:
    film: str
    film_sha256: str
    subtitles: str
    format: str
    format_reason: str
    speaker: str | None
    mode: str  # named | example | cluster | choose-cluster
    candidates: list[Candidate]
    rejected: list[dict[str, Any]]
    skipped_cues: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    timings_s: dict[str, float]
    syntax: str = "webvtt"  # webvtt | srt
    min_seconds: float = MIN_SEGMENT_S
    summary: dict[str, Any] = field(default_factory=dict)  # what was found, and why fewer (findings)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = "voxbench/extraction/v0"
        return data


@dataclass
class _Film:
    """What every mode works from: the film's audio, its subtitles, the speech regions found."""

    film: Path
    subtitles: Path
    subs: Any
    samples: np.ndarray
    floor: float
    found: list[Region]
    embed: Callable[..., Any]
    embed_many: Callable[..., Any]


def extract(
    film: Path,
    subtitles: Path,
    out_dir: Path,
    *,
    speaker: str | None = None,
    example: Path | None = None,
    cluster_choice: int | None = None,
    top: int = 5,
    min_seconds: float = MIN_SEGMENT_S,
    progress: Callable[[str], None] = lambda _line: None,
) -> Extraction:
    """Rank a speaker's references in a film (single stretches of at least ``min_seconds``, and
    joined ones when too few) and cut the best ``top`` into ``out_dir``.

    Three ways to say who: ``speaker`` (the subtitles name them), ``example`` (a clip of their
    voice), ``cluster_choice`` (a cluster of voices found; with none of the three, the clusters are
    listed for the user to choose from)."""
    if not 1.0 <= min_seconds <= MAX_SEGMENT_S:
        raise ExtractError(f"--min-seconds {min_seconds:g} is outside 1–{MAX_SEGMENT_S:g} s")
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now
        progress(f"{stage}: {timings[stage]:.2f} s")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subs = vtt.read(Path(subtitles))
    lap("parse")
    samples = load_audio(Path(film))
    lap("decode")
    levels = frame_levels(samples)
    speech, floor = speech_frames(levels)
    found = regions(subs, speech, levels)
    if not found:
        raise ExtractError("no speech where the subtitles have cues: do they belong to this film?")
    lap("segment")
    source = _Film(Path(film), Path(subtitles), subs, samples, floor, found, *_embedders())
    clusters_out: list[dict[str, Any]] = []
    if speaker is not None:
        chosen, target, mode = _by_name(source, speaker, example)
        lap("embed")
    else:
        groups, clusters_out = _clusters(source)
        lap("embed")
        if example is not None:
            chosen, target, mode = _by_example(source, groups, example)
        elif cluster_choice is not None:
            chosen, target, mode = _by_cluster(groups, cluster_choice)
        else:
            write_representatives(source.film, out_dir, clusters_out)
            result = Extraction(
                str(film), sha256_file(Path(film)), str(subtitles), subs.format, subs.reason, None, "choose-cluster",
                [], [], [{"line": n, "reason": why} for n, why in subs.skipped], clusters_out, timings, subs.syntax,
                min_seconds, findings.clusters_summary(clusters_out, subs.skipped),
            )  # fmt: skip
            _save(out_dir, result)
            return result
    candidates, rejected, pool = _rank(source, chosen, target, top, min_seconds)
    lap("rank")
    _cut_best(source.film, out_dir, candidates, rejected, top)
    lap("extract")
    summary = findings.summarize(
        asked=top, candidates=candidates, rejected=rejected, mode=mode, min_seconds=min_seconds,
        clusters=clusters_out, pool=pool, skipped=subs.skipped,
    )  # fmt: skip
    result = Extraction(
        str(film), sha256_file(Path(film)), str(subtitles), subs.format, subs.reason, speaker, mode, candidates,
        rejected, [{"line": n, "reason": why} for n, why in subs.skipped], clusters_out, timings, subs.syntax,
        min_seconds, summary,
    )  # fmt: skip
    _save(out_dir, result)
    return result


def _by_name(source: _Film, speaker: str, example: Path | None) -> tuple[list[Region], np.ndarray, str]:
    """The regions the subtitles give ``speaker``; their voice from an example clip, else from
    their own cleanest stretches."""
    subs = source.subs
    if subs.format != "voice":
        raise ExtractError(
            f"the subtitles name no speakers ({subs.reason}); give an example clip (--example) or pick a cluster"
        )
    wanted = speaker.casefold()
    chosen = [r for r in source.found if r.speaker and r.speaker.casefold() == wanted]
    if not chosen:
        raise ExtractError(f"{speaker!r} never speaks in these subtitles; they name: {', '.join(subs.speakers())}")
    if example:
        return chosen, source.embed(read_wav_file(str(example))), "example"
    clean = [r for r in chosen if not r.overlapped and r.end - r.start >= 1.0] or chosen
    stretches = [_slice(source.samples, r.start, r.end) for r in clean]
    pieces = [v for v in source.embed_many(stretches) if v is not None]
    if not pieces:
        raise ExtractError(f"{speaker!r} has no stretch of speech over 1 s to learn the voice from")
    return chosen, np.mean(pieces, axis=0), "named"


def _clusters(source: _Film) -> tuple[dict[int, list[Region]], list[dict[str, Any]]]:
    """The voices of the film, clustered; per cluster its most typical stretch (nearest its
    centroid, from its longer regions) for the user to hear."""
    embed_regions(source.found, source.samples, source.embed_many)
    groups = cluster(source.found)
    listed = []
    for number, group in groups.items():
        centroid = np.mean([r.embedding for r in group], axis=0)
        longer = [r for r in group if r.end - r.start >= 1.5] or group
        representative = max(longer, key=lambda r: (_cosine(r.embedding, centroid), r.end - r.start))
        listed.append(
            {"cluster": number, "regions": len(group), "speech_s": round(sum(r.end - r.start for r in group), 1),
             "representative": {"start": representative.start, "end": representative.end}}
        )  # fmt: skip
    return groups, listed


def _by_example(source: _Film, groups: dict[int, list[Region]], example: Path) -> tuple[list[Region], np.ndarray, str]:
    """The cluster whose centroid is closest to the example clip's voice."""
    reference = source.embed(read_wav_file(str(example)))
    centroids = {n: np.mean([r.embedding for r in g], axis=0) for n, g in groups.items()}
    best = max(centroids, key=lambda n: _cosine(centroids[n], reference))
    return groups[best], reference, "example"


def _by_cluster(groups: dict[int, list[Region]], choice: int) -> tuple[list[Region], np.ndarray, str]:
    if choice not in groups:
        raise ExtractError(f"there is no cluster {choice}; there are {len(groups)}")
    chosen = groups[choice]
    return chosen, np.mean([r.embedding for r in chosen], axis=0), "cluster"


def _rank(
    source: _Film, chosen: list[Region], target: np.ndarray, top: int, min_seconds: float
) -> tuple[list[Candidate], list[dict[str, Any]], dict[str, Any]]:
    """Single stretches ranked and checked for other voices; joined short regions when too few."""
    runs = merge(chosen, source.found)
    checker = MixedCheck(chosen, source.samples, target, source.embed_many)
    candidates, rejected, runs_of = rank(
        runs, source.samples, source.floor, target, source.embed_many, min_seconds, top
    )
    candidates = verify(candidates, runs_of, checker, top, rejected)
    pool: dict[str, Any] = {}
    if len(candidates) < top:
        count = top - len(candidates)
        more, pool = join_short(chosen, source.samples, source.floor, target, source.embed_many, count, min_seconds,
                                checker)  # fmt: skip
        candidates += more
    candidates.sort(key=lambda c: (-c.score, c.start))
    for number, candidate in enumerate(candidates, start=1):
        candidate.rank = number
    return candidates, rejected, pool


def _cut_best(film: Path, out_dir: Path, candidates: list[Candidate], rejected: list[dict[str, Any]], top: int) -> None:
    """Cut the best ``top`` that cut cleanly; a failed cut is a rejection with ffmpeg's reason.
    Two ffmpeg at a time (each seeks into the film and loudness-normalizes one clip); the names are
    given in rank order first, so the files are those of cutting one by one."""
    taken: set[str] = set()
    kept, at = 0, 0

    def cut_one(job: tuple[Candidate, str]) -> str | None:
        candidate, name = job
        if candidate.kind == "joined":
            return cut_joined(film, candidate.spans, inside(out_dir, name))
        return cut(film, candidate.start, candidate.end, inside(out_dir, name))

    with ThreadPoolExecutor(max_workers=2) as pool:
        while kept < top and at < len(candidates):
            batch = candidates[at : at + top - kept]  # as many as still needed: a failed cut takes the next
            at += len(batch)
            jobs = [(c, clip_name(c.start, c.end, taken, c.kind == "joined")) for c in batch]
            for (candidate, name), reason in zip(jobs, pool.map(cut_one, jobs), strict=True):
                if reason:
                    where = {"start": candidate.start, "end": candidate.end}
                    rejected.append({**where, "why": "cut_failed", "reason": reason})
                    continue
                candidate.file = name
                kept += 1


def _save(out_dir: Path, result: Extraction) -> None:
    from bench_py.files import atomic_write_json

    atomic_write_json(out_dir / CANDIDATES, result.to_json())


def load(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / CANDIDATES
    if not path.is_file():
        raise ExtractError(f"{path} is missing: run voxbench extract first")
    return cast(dict[str, Any], json.loads(path.read_text()))
