"""Summaries computed from raw samples; every percentile names its method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

#: numpy's default linear interpolation between closest ranks (Hyndman & Fan type 7).
PERCENTILE_METHOD: Final = "linear"  # Final keeps the literal, which np.percentile's method= needs


def percentile(values: Sequence[float | None], q: float) -> float | None:
    clean = [v for v in values if v is not None]
    if not clean:
        return None
    return float(np.percentile(clean, q, method=PERCENTILE_METHOD))


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """p50/p90/p99, mean, sample stdev, min, max and n of the non-missing values, with the method named."""
    clean = [float(v) for v in values if v is not None]
    if not clean:
        return {"n": 0, "method": PERCENTILE_METHOD}
    return {
        "n": len(clean),
        "p50": percentile(clean, 50),
        "p90": percentile(clean, 90),
        "p99": percentile(clean, 99),
        "mean": float(np.mean(clean)),
        "stdev": float(np.std(clean, ddof=1)) if len(clean) > 1 else None,
        "min": min(clean),
        "max": max(clean),
        "method": PERCENTILE_METHOD,
    }
