"""The default reference clip: a third voice that neither stand-in engine speaks with.

festival's slt HTS voice says a fixed passage; the clip is resampled to 24 kHz. The candidate
stand-in (espeak-ng) has no slt voice and the incumbent stand-in (flite) leaves its slt voice
out, so cloning starts from the same distance on both sides and the demo favours neither.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from bench_py.audio import OUTPUT_RATE, Pcm, read_wav_file, resample, write_wav_file

REFERENCE_VOICE = "cmu_us_slt_arctic_hts"
REFERENCE_TEXT = (
    "I can feel the fear that you carry around, and I wish there was something I could do to help you "
    "let go of it. Because if you could, I don't think you'd feel so alone anymore."
)


def synthesize_reference(path: str, text: str = REFERENCE_TEXT, voice: str = REFERENCE_VOICE) -> Pcm:
    """Write the reference clip to ``path`` (24 kHz mono int16 WAV) and return its audio."""
    with tempfile.TemporaryDirectory(prefix="voxbench-ref-") as workdir:
        text_path = os.path.join(workdir, "reference.txt")
        raw_path = os.path.join(workdir, "reference.wav")
        with open(text_path, "w", encoding="utf-8") as handle:
            handle.write(text)
        result = subprocess.run(
            ["text2wave", "-eval", f"(voice_{voice})", "-o", raw_path, text_path],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not os.path.exists(raw_path):
            raise RuntimeError(
                f"festival could not speak the reference ({result.stderr.strip()}); "
                "install festival and festvox-us-slt-hts"
            )
        pcm = resample(read_wav_file(raw_path), OUTPUT_RATE)
    write_wav_file(path, pcm)
    return pcm
