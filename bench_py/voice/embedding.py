"""Speaker embeddings of many stretches of one film, fast enough for a 2-hour film.

The values are those of the shared scorer, :func:`bench_py.judge.similarity.embed_many`
(resemblyzer's preprocessing, its partial windows and their average; a test holds them equal):
only the work is arranged differently. The mel filterbank is one matrix product (librosa's
``melspectrogram`` spends most of its time planning an ``einsum`` for each clip), and the work is
split over two cores: the audio is prepared on a second thread while the encoder, which releases
the GIL, runs on the batch before, each on one thread (torch's and BLAS's own thread pools fight
each other on two cores: four times slower under load, measured).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from bench_py.audio import Pcm, int16_to_float

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

ENCODER_RATE = 16_000
N_FFT, HOP = 400, 160  # resemblyzer: 25 ms windows, 10 ms steps at 16 kHz
MEL_CHANNELS = 40
CHUNK = 128  # clips prepared ahead of the encoder


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=ENCODER_RATE, n_fft=N_FFT, n_mels=MEL_CHANNELS)


def _prepare(encoder: VoiceEncoder, pcm: Pcm) -> list[np.ndarray]:
    """The mel frames of each partial window of one clip (none: under 0.5 s of speech)."""
    import librosa
    from resemblyzer import preprocess_wav

    wav = preprocess_wav(int16_to_float(pcm.samples), source_sr=pcm.rate)
    if len(wav) < ENCODER_RATE // 2:
        return []
    wav_slices, mel_slices = encoder.compute_partial_slices(len(wav), rate=1.3, min_coverage=0.75)
    if wav_slices[-1].stop >= len(wav):
        wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)), "constant")
    power = np.abs(librosa.stft(wav, n_fft=N_FFT, hop_length=HOP, pad_mode="constant")) ** 2
    mel = (_mel_basis() @ power).astype(np.float32).T
    return [mel[piece] for piece in mel_slices]


def embed_many(pcms: list[Pcm], batch: int = 256) -> list[np.ndarray | None]:
    """Unit-length embeddings of ``pcms`` (None for a clip with under 0.5 s of speech)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return _embed_many(pcms, batch)
    finally:
        torch.set_num_threads(threads)


def _embed_many(pcms: list[Pcm], batch: int) -> list[np.ndarray | None]:
    import torch

    from bench_py.judge.similarity import _encoder

    encoder = _encoder()
    out: list[np.ndarray | None] = [None] * len(pcms)
    sums: dict[int, list[np.ndarray]] = {}

    def run(mels: list[np.ndarray], owners: list[int]) -> None:
        with torch.no_grad():
            partials = encoder(torch.from_numpy(np.array(mels)).to(encoder.device)).cpu().numpy()
        for owner, partial in zip(owners, partials, strict=True):
            sums.setdefault(owner, []).append(partial)

    chunks = [range(start, min(start + CHUNK, len(pcms))) for start in range(0, len(pcms), CHUNK)]

    def prepare_chunk(indices: range) -> list[tuple[int, list[np.ndarray]]]:
        return [(index, _prepare(encoder, pcms[index])) for index in indices]

    if not chunks:
        return out
    mels: list[np.ndarray] = []
    owners: list[int] = []
    with ThreadPoolExecutor(max_workers=1) as pool:  # the next chunk is prepared while this one is encoded
        pending = pool.submit(prepare_chunk, chunks[0])
        for number in range(len(chunks)):
            done = pending.result()
            if number + 1 < len(chunks):
                pending = pool.submit(prepare_chunk, chunks[number + 1])
            for index, pieces in done:
                mels.extend(pieces)
                owners.extend([index] * len(pieces))
            while len(mels) >= batch:
                run(mels[:batch], owners[:batch])
                mels, owners = mels[batch:], owners[batch:]
    if mels:
        run(mels, owners)
    for index, partials in sums.items():
        raw = np.mean(partials, axis=0)
        out[index] = raw / np.linalg.norm(raw, 2)
    return out
