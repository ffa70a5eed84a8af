"""Audio sanity before timing: an install path whose output is not speech fails with the reason.

Timing an engine that returns silence, clipping or noise would produce honest-looking numbers
about nothing. Four facts decide: duration and level (silent or empty), clipping, spectral
flatness (white noise is flat, speech is not) and voicing (speech has a pitch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench_py.audio import Pcm, int16_to_float, median_f0, rms_dbfs

MIN_AUDIO_S = 0.5
MIN_LEVEL_DBFS = -50.0
MAX_CLIPPED_FRACTION = 0.01
#: Median per-frame spectral flatness above which audio is noise-like. Speech sits far below
#: (espeak-ng 0.001, flite 0.02); white noise is near 0.56 (tests/unit/test_sanity.py).
MAX_FLATNESS = 0.2


def spectral_flatness(pcm: Pcm, frame_ms: float = 32.0) -> float | None:
    """Median over non-silent frames of geometric mean / arithmetic mean of the power spectrum."""
    x = int16_to_float(pcm.samples)
    size = max(64, int(pcm.rate * frame_ms / 1000))
    frames = len(x) // size
    if frames == 0:
        return None
    blocks = x[: frames * size].reshape(frames, size) * np.hanning(size)
    power = np.abs(np.fft.rfft(blocks, axis=1)) ** 2 + 1e-12
    loud = 10 * np.log10(np.mean(blocks**2, axis=1) + 1e-12) > MIN_LEVEL_DBFS
    if not loud.any():
        return None
    power = power[loud]
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return float(np.median(flatness))


def check(pcm: Pcm) -> dict[str, Any]:
    """``ok`` with the facts, or not ``ok`` with the first reason that applies."""
    samples = pcm.samples
    level = rms_dbfs(samples)
    clipped = float(np.mean(np.abs(samples.astype(np.int32)) >= 32767)) if len(samples) else 0.0
    flatness = spectral_flatness(pcm)
    f0 = median_f0(pcm) if len(samples) else None
    facts = {
        "audio_s": round(pcm.duration_s, 3),
        "rms_dbfs": round(float(level), 1) if np.isfinite(level) else None,
        "median_f0_hz": f0,
        "clipped_fraction": round(clipped, 5),
        "spectral_flatness": None if flatness is None else round(flatness, 4),
    }
    if pcm.duration_s < MIN_AUDIO_S or level < MIN_LEVEL_DBFS:
        return {"ok": False, "reason": "silent or empty audio", **facts}
    if flatness is not None and flatness > MAX_FLATNESS:
        return {"ok": False, "reason": f"noise-like audio (spectral flatness {flatness:.2f} > {MAX_FLATNESS})", **facts}
    if clipped > MAX_CLIPPED_FRACTION:
        return {"ok": False, "reason": f"clipped audio ({clipped:.1%} of samples at full scale)", **facts}
    if f0 is None:
        return {"ok": False, "reason": "no voiced frames: noise, not speech", **facts}
    return {"ok": True, **facts}
