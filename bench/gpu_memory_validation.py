#!/usr/bin/env python3
"""Validate the memory sampler on a real GPU: allocate a known amount, compare each source's peak.

Run on a machine with an NVIDIA GPU and the host's own torch (not this project's CPU pin):
    python bench/gpu_memory_validation.py [--gib 10]
Prints, per source, the peak delta over the allocation and its error. nvidia-ml-py must be
importable; a pure-Python wheel on sys.path works (--nvml-wheel PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def own_cgroup_memory_file() -> Path | None:
    """This process's cgroup memory file (v2 unified or v1 memory controller), if visible."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        root = Path("/sys/fs/cgroup")
        candidates = [root / path.lstrip("/") / "memory.current"] if controllers == "" else []
        if "memory" in controllers.split(","):
            candidates.append(root / "memory" / path.lstrip("/") / "memory.usage_in_bytes")
        for candidate in [*candidates, root / "memory.current", root / "memory" / "memory.usage_in_bytes"]:
            if candidate.is_file():
                return candidate
    return None


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--gib", type=float, default=10.0)
    cli.add_argument("--nvml-wheel", help="path of a nvidia-ml-py wheel to import from")
    cli.add_argument("--json", help="also write the figures to this file")
    args = cli.parse_args()
    if args.nvml_wheel:
        sys.path.insert(0, args.nvml_wheel)

    import torch

    from bench_py.measure.memory import (
        CgroupSource,
        MeminfoSource,
        MemorySampler,
        NvmlDeviceSource,
        NvmlProcessSource,
        UnavailableSource,
    )

    torch.cuda.init()
    torch.empty(1, device="cuda")  # create the CUDA context first: it is not part of the allocation
    torch.cuda.synchronize()
    cgroup = own_cgroup_memory_file()
    sources = [
        NvmlProcessSource(lambda: [os.getpid()]),
        NvmlDeviceSource(torch.cuda.current_device()),
        CgroupSource(cgroup) if cgroup else UnavailableSource("cgroup", "no cgroup memory file visible"),
        MeminfoSource(),
    ]
    size = int(args.gib * 2**30)
    sampler = MemorySampler(sources, interval_s=0.05)
    with sampler:
        time.sleep(0.5)
        block = torch.empty(size, dtype=torch.uint8, device="cuda")
        block.fill_(1)
        torch.cuda.synchronize()
        time.sleep(1.0)
        torch_peak = torch.cuda.max_memory_allocated()
        del block
        torch.cuda.synchronize()
        time.sleep(0.5)
    results = sampler.results()
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "allocated_bytes": size,
        "torch_max_memory_allocated": torch_peak,
        "sources": {},
    }
    print(f"{report['device']}, torch {torch.__version__}: allocated {args.gib:g} GiB after context creation")
    print(f"{'source':<14}{'available':>10}{'peak delta GiB':>16}{'error':>9}")
    for name, entry in results.items():
        if entry["available"]:
            delta = entry["peak_delta"]
            error = (delta - size) / size
            print(f"{name:<14}{'yes':>10}{delta / 2**30:>16.3f}{error:>+9.2%}")
            report["sources"][name] = {"peak_delta": delta, "error": error, "samples": entry["samples"]}
        else:
            print(f"{name:<14}{'no':>10}  {entry['reason']}")
            report["sources"][name] = {"available": False, "reason": entry["reason"]}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
