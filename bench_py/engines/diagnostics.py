"""Kernel-error diagnostics: NVRTC, Jiterator and CUDA errors in an engine's log.

On new GPUs (GB10's sm_121) engines fail in runtime-compiled kernels: an NVRTC error on a
complex STFT, a Jiterator kernel that cannot build. Such a failure is easy to lose in a long
log, and easy to mistake for "the model does not work". voxbench finds it, and writes what an
upstream bug report needs into ``voxtral_nvrtc_diagnostic.log``: the traceback, the operation it
died in, and the versions the engine printed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench_py.files import atomic_write_text

DIAGNOSTIC_FILE = "voxtral_nvrtc_diagnostic.log"
PATTERNS = re.compile(
    r"nvrtc|NVRTC_ERROR|jiterator|CUDA error|cudaError|CUBLAS_STATUS|no kernel image is available|sm_1[0-9]{2}",
    re.IGNORECASE,
)
VERSION = re.compile(
    r"\b(torch|vllm-omni|vllm|cuda|cudnn|nvrtc|driver|transformers)\b[ =:v]*([0-9][\w.+-]*)", re.IGNORECASE
)
FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')


def scan(text: str) -> list[dict[str, Any]]:
    """Each kernel error in a log: the matching line, the traceback that led to it, the last frame."""
    lines = text.splitlines()
    found: list[dict[str, Any]] = []
    seen_tracebacks: set[int] = set()
    for index, line in enumerate(lines):
        if not PATTERNS.search(line):
            continue
        start = index
        while start > 0 and not lines[start].lstrip().startswith("Traceback (most recent call last)"):
            start -= 1
            if index - start > 60:
                start = index
                break
        if start in seen_tracebacks and start != index:
            continue
        seen_tracebacks.add(start)
        stack = lines[start : index + 1]
        frames = [FRAME.match(s) for s in stack]
        last = next((m for m in reversed(frames) if m), None)
        found.append(
            {
                "line": index + 1,
                "error": line.strip(),
                "stack": stack,
                "operation": f"{last.group(3)} ({last.group(1)}:{last.group(2)})" if last else None,
            }
        )
    return found


def versions(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for match in VERSION.finditer(text):
        out.setdefault(match.group(1).lower(), match.group(2))
    return out


def write_report(run_dir: Path, logs: dict[str, str], context: dict[str, Any]) -> dict[str, Any] | None:
    """Scan every engine log; when a kernel error is found, write the diagnostic file and say so."""
    findings = {name: scan(text) for name, text in logs.items()}
    findings = {name: found for name, found in findings.items() if found}
    if not findings:
        return None
    out = [f"# kernel-error diagnostic written by voxbench for run {run_dir.name}", ""]
    for key, value in sorted(context.items()):
        out.append(f"{key}: {value}")
    for name, found in findings.items():
        out += ["", f"## {name}", f"versions printed by the engine: {versions(logs[name]) or 'none found'}"]
        for item in found:
            out += [
                "",
                f"line {item['line']}: {item['error']}",
                f"operation: {item['operation'] or 'unknown'}",
                "stack:",
            ]
            out += [f"  {frame}" for frame in item["stack"]]
    atomic_write_text(run_dir / DIAGNOSTIC_FILE, "\n".join(out) + "\n", mode=0o644)
    return {
        "file": DIAGNOSTIC_FILE,
        "engines": sorted(findings),
        "errors": sum(len(found) for found in findings.values()),
        "first": next(iter(findings.values()))[0]["error"],
    }
