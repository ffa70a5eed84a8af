"""Which takes a blind session pairs (both engines' takes of one utterance and condition), and the
pairs' order and sides: shuffled, counterbalanced, ids from ``secrets``."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def takes(run_dir: Path, measurements: dict[str, Any]) -> dict[tuple[int, str], dict[str, str]]:
    """(utterance, condition) -> {side: wav path relative to the run} for takes both sides saved,
    the incumbent's deferred takes (``voxbench baseline resume``) included."""
    from bench_py.measure import deferred

    takes: dict[tuple[int, str], dict[str, str]] = {}
    for side, records in ((measurements.get("bench") or {}).get("records") or {}).items():
        for record in records:
            if record.get("wav") and not record.get("warmup"):
                takes.setdefault((record["utterance"], record["condition"]), {}).setdefault(side, record["wav"])
    for (utterance, condition), record in deferred.done(run_dir).items():
        takes.setdefault((utterance, condition), {}).setdefault("incumbent", record["wav"])
    return {key: sides for key, sides in takes.items() if {"candidate", "incumbent"} <= set(sides)}


def pairable(run_dir: Path, measurements: dict[str, Any]) -> bool:
    """Whether both engines saved a take of at least one utterance (a session can be made)."""
    return bool(takes(Path(run_dir), measurements))


def has_takes(run_dir: Path, measurements: dict[str, Any]) -> bool:
    """Whether the run saved any take a listener could be asked about (and so has a blind to keep)."""
    from bench_py.measure import deferred

    records = ((measurements.get("bench") or {}).get("records") or {}).values()
    return any(r.get("wav") for side in records for r in side) or bool(deferred.done(Path(run_dir)))


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
