"""Listening statistics: means, the paired difference with a bootstrap CI, Wilcoxon, agreement.

The verdict uses only the means (the sealed rule); everything here is reported beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import krippendorff
import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20260101  # fixed: the same scores give the same interval, and the same report
UNDERPOWERED_HALF_WIDTH = 0.5


def _real(scores: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    return [s for s in scores if not s.get("simulated") and s.get("condition") == condition and s.get("side")]


def paired_differences(scores: list[dict[str, Any]], condition: str) -> list[tuple[str, int, float]]:
    """(listener, utterance, candidate − incumbent) for each pair a listener scored on both sides.
    A listener who scored a clip twice counts with the mean of the two."""
    cells: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in _real(scores, condition):
        cells[(s["listener"], int(s.get("utterance", -1)))][s["side"]].append(float(s["score"]))
    out = []
    for (listener, utterance), sides in sorted(cells.items()):
        if sides.get("candidate") and sides.get("incumbent"):
            diff = float(np.mean(sides["candidate"]) - np.mean(sides["incumbent"]))
            out.append((listener, utterance, diff))
    return out


def bootstrap_ci(pairs: list[tuple[str, int, float]], resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile interval of the mean difference, resampling listeners and utterances
    (both with replacement, crossed), so that neither is treated as fixed."""
    listeners = sorted({p[0] for p in pairs})
    utterances = sorted({p[1] for p in pairs})
    table = {(p[0], p[1]): p[2] for p in pairs}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = []
    for _ in range(resamples):
        chosen_l = rng.choice(len(listeners), len(listeners))
        chosen_u = rng.choice(len(utterances), len(utterances))
        values = [
            table[(listeners[i], utterances[j])]
            for i in chosen_l
            for j in chosen_u
            if (listeners[i], utterances[j]) in table
        ]
        if values:
            means.append(float(np.mean(values)))
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def wilcoxon_p(differences: list[float]) -> float | None:
    if not any(differences):
        return 1.0 if differences else None
    from scipy import stats  # here, not at the top: its import costs every module that reads a verdict a second

    return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)


def agreement_alpha(scores: list[dict[str, Any]]) -> float | None:
    """Krippendorff's alpha (ordinal) over clips scored by several listeners; None with fewer than 2."""
    real = [s for s in scores if not s.get("simulated")]
    listeners = sorted({s["listener"] for s in real})
    clips = sorted({s["clip"] for s in real})
    if len(listeners) < 2 or not clips:
        return None
    grid = np.full((len(listeners), len(clips)), np.nan)
    for s in real:
        grid[listeners.index(s["listener"]), clips.index(s["clip"])] = s["score"]
    if len({v for v in grid[~np.isnan(grid)]}) < 2:
        return None
    if not np.any(np.sum(~np.isnan(grid), axis=0) >= 2):
        return None  # no clip was scored by two listeners: there is no agreement to measure
    value = float(
        krippendorff.alpha(reliability_data=grid, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    )
    return None if math.isnan(value) else value


def summarize(scores: list[dict[str, Any]], condition: str) -> dict[str, Any]:
    """The figures shown beside the verdict for one voice condition."""
    real = _real(scores, condition)
    per_side = {side: [float(s["score"]) for s in real if s["side"] == side] for side in ("candidate", "incumbent")}
    pairs = paired_differences(scores, condition)
    diffs = [p[2] for p in pairs]
    out: dict[str, Any] = {
        "condition": condition,
        "n": {side: len(v) for side, v in per_side.items()},
        "means": {side: (float(np.mean(v)) if v else None) for side, v in per_side.items()},
        "distribution": {side: [v.count(k) for k in (1.0, 2.0, 3.0, 4.0, 5.0)] for side, v in per_side.items()},
        "pairs": len(pairs),
        "listeners": sorted({s["listener"] for s in real}),
        "mean_difference": float(np.mean(diffs)) if diffs else None,
        "ci95": None,
        "wilcoxon_p": wilcoxon_p(diffs),
        "underpowered": True,
        "alpha_ordinal": agreement_alpha([s for s in real]),
        "simulated_ignored": sum(1 for s in scores if s.get("simulated")),
        "method": (
            f"paired by listener and utterance; 95% percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples of "
            "listeners and utterances, fixed seed); Wilcoxon signed-rank (zero differences dropped); "
            "Krippendorff's alpha, ordinal"
        ),
    }
    if len(pairs) >= 2:
        low, high = bootstrap_ci(pairs)
        out["ci95"] = [low, high]
        out["underpowered"] = (high - low) / 2 > UNDERPOWERED_HALF_WIDTH
    return out
