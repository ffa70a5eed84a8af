"""Speaker similarity: cosine between resemblyzer (GE2E) speaker embeddings.

The one scorer every stage shares (stand-in checks, preset-voice search, reports), so a
figure from one place means the same in another. resemblyzer ships its encoder weights in
its wheel: nothing is downloaded at run time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from bench_py.audio import Pcm, int16_to_float

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

#: resemblyzer's encoder works at this rate.
ENCODER_RATE = 16_000


@lru_cache(maxsize=1)
def _encoder() -> VoiceEncoder:
    from resemblyzer import VoiceEncoder  # heavy (torch): imported only when scoring

    return VoiceEncoder(device="cpu", verbose=False)


def embed(pcm: Pcm) -> np.ndarray:
    """Unit-length speaker embedding of a clip (silence trimmed by resemblyzer's VAD)."""
    from resemblyzer import preprocess_wav

    wav = preprocess_wav(int16_to_float(pcm.samples), source_sr=pcm.rate)
    if len(wav) < ENCODER_RATE // 2:
        raise ValueError("the clip has under 0.5 s of speech after silence trimming")
    return _encoder().embed_utterance(wav)


def speaker_similarity(a: Pcm, b: Pcm) -> float:
    """Cosine similarity of two clips' speaker embeddings (1.0 = same voice)."""
    ea, eb = embed(a), embed(b)
    return float(np.dot(ea, eb) / (np.linalg.norm(ea) * np.linalg.norm(eb)))
