"""Which takes a blind session pairs (both engines' takes of one utterance and condition), and the
pairs' order and sides: shuffled, counterbalanced, ids from ``secrets``."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench_py.documents.models import Measurements, Record


def _records(measurements: Measurements) -> dict[str, list[Record]]:
    return measurements.bench.records if measurements.bench else {}


def takes(run_dir: Path, measurements: Measurements) -> dict[tuple[int, str], dict[str, str]]:
    """(utterance, condition) -> {side: wav path relative to the run} for takes both sides saved,
    the incumbent's deferred takes (``voxbench baseline resume``) included."""
    from bench_py.measure import deferred

    takes: dict[tuple[int, str], dict[str, str]] = {}
    for side, records in _records(measurements).items():
        for record in records:
            wav = record.extra("wav")  # the v0 schema does not name it
            if wav and not record.warmup:
                takes.setdefault((record.utterance, record.condition), {}).setdefault(side, wav)
    for (utterance, condition), done in deferred.done(run_dir).items():
        takes.setdefault((utterance, condition), {}).setdefault("incumbent", done["wav"])
    return {key: sides for key, sides in takes.items() if {"candidate", "incumbent"} <= set(sides)}


def pairable(run_dir: Path, measurements: Measurements) -> bool:
    """Whether both engines saved a take of at least one utterance (a session can be made)."""
    return bool(takes(Path(run_dir), measurements))


def has_takes(run_dir: Path, measurements: Measurements) -> bool:
    """Whether the run saved any take a listener could be asked about (and so has a blind to keep)."""
    from bench_py.measure import deferred

    records = _records(measurements).values()
    return any(r.extra("wav") for side in records for r in side) or bool(deferred.done(Path(run_dir)))


def _counterbalanced(rng: random.Random, count: int) -> list[str]:
    """Which engine plays A in each of ``count`` pairs: each is A in half of them (a coin decides
    the odd one), in a random order. Independent coin flips would let one engine be A throughout
    a short session, and listeners favour one position."""
    firsts = ["candidate", "incumbent"] * (count // 2)
    if count % 2:
        firsts.append(rng.choice(["candidate", "incumbent"]))
    rng.shuffle(firsts)
    return firsts


def plan(keys: Iterable[tuple[int, str]], rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pairs (in a random order, A/B counterbalanced, clip ids from ``secrets``) and the mapping
    from clip id to side, utterance and condition. Nothing public depends on the side but the
    mapping itself: ids are random and the pair order is shuffled."""
    keys = sorted(keys)
    rng.shuffle(keys)
    pairs, mapping = [], {}
    for index, ((utterance, condition), first) in enumerate(zip(keys, _counterbalanced(rng, len(keys)), strict=True)):
        sides = [first, "incumbent" if first == "candidate" else "candidate"]
        ids = [secrets.token_hex(8) for _ in sides]
        for clip_id, side in zip(ids, sides, strict=True):
            mapping[clip_id] = {"side": side, "utterance": utterance, "condition": condition}
        pairs.append({"pair": f"p{index + 1:02d}", "a": ids[0], "b": ids[1], "utterance": utterance})
    return pairs, mapping
