"""One ffmpeg process for many takes: each input its own filter chain and its own output.

Starting ffmpeg (loading its libraries) costs more than ``loudnorm`` or ``ebur128`` on a take of a
few seconds: one process per take spent most of a run's sealing and metering on starts. Each input
here is filtered by its own chain, unconnected to the others, so what comes out for a take is byte
for byte what one process per take gives (tests hold both to each other).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Inputs per process: each holds a file open and a filter chain; a long profile's takes are split.
INPUTS_PER_PROCESS = 32


def batches(items: Sequence[T], at_least: int = 1) -> list[list[T]]:
    """``items`` in order, cut into ``at_least`` near-equal batches (more when one would exceed
    :data:`INPUTS_PER_PROCESS`); none empty."""
    count = max(at_least, -(-len(items) // INPUTS_PER_PROCESS), 1)
    size = -(-len(items) // count) if items else 0
    return [list(items[start : start + size]) for start in range(0, len(items), size)] if size else []


def per_input(
    inputs: Sequence[Path], chain: str, outputs: Sequence[Sequence[str]], loglevel: str = "error", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``chain`` on the first audio stream of each input, the result of input *i* written as
    ``outputs[i]`` says (output options, then the target). ffmpeg names the filters of the graph
    ``Parsed_<filter>_<n>`` in order, so a one-filter chain's instance *n* is input *n*'s.
    Raises FileNotFoundError when ffmpeg is missing; its exit status is the caller's to read."""
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", loglevel, "-y"]
    for source in inputs:
        command += ["-i", str(source)]
    graph = ";".join(f"[{index}:a:0]{chain}[out{index}]" for index in range(len(inputs)))
    command += ["-filter_complex", graph]
    for index, output in enumerate(outputs):
        command += ["-map", f"[out{index}]", *output]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
