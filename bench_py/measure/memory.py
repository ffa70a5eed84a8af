"""Peak memory sampled in the background, each figure tagged with the source it came from.

Sources, tried side by side (a benchmark on unified memory needs more than one view):

* ``nvml_process`` — NVML per-process GPU memory, summed over the engine's processes;
* ``nvml_device`` — NVML device memory in use (GB10 boards answer "Not Supported");
* ``cgroup`` — the container's cgroup memory (v1 ``memory.usage_in_bytes``, v2 ``memory.current``);
* ``process_rss`` — resident memory of the engine's processes (install paths 2B and 2C);
* ``meminfo`` — the host's ``MemTotal - MemAvailable`` from ``/proc/meminfo``.

A source that cannot be read is recorded as unavailable, with the reason, never as zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class SourceUnavailable(RuntimeError):
    """This source cannot be read here; the message says why (it is recorded, not hidden)."""


class MemorySource(Protocol):
    name: str

    def read(self) -> int:
        """Bytes in use now; raises :class:`SourceUnavailable` when it cannot tell."""


# -- /proc/meminfo -----------------------------------------------------------------------------
@dataclass
class MeminfoSource:
    path: Path = Path("/proc/meminfo")
    name: str = "meminfo"

    def read(self) -> int:
        fields: dict[str, int] = {}
        try:
            for line in self.path.read_text().splitlines():
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    fields[key] = int(parts[0]) * 1024
        except OSError as error:
            raise SourceUnavailable(f"{self.path}: {error.strerror}") from None
        if "MemTotal" not in fields or "MemAvailable" not in fields:
            raise SourceUnavailable(f"{self.path} lacks MemTotal or MemAvailable")
        return fields["MemTotal"] - fields["MemAvailable"]


# -- cgroups -----------------------------------------------------------------------------------
def cgroup_memory_file(container_id: str, root: Path = Path("/sys/fs/cgroup")) -> Path:
    """Where a Docker container's memory usage is, for cgroup v2 or v1 layouts (first that exists)."""
    candidates = [
        root / "system.slice" / f"docker-{container_id}.scope" / "memory.current",  # v2, systemd driver
        root / "docker" / container_id / "memory.current",  # v2, cgroupfs driver
        root / "memory" / "docker" / container_id / "memory.usage_in_bytes",  # v1, cgroupfs driver
        root / "memory" / "system.slice" / f"docker-{container_id}.scope" / "memory.usage_in_bytes",  # v1, systemd
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SourceUnavailable(f"no cgroup memory file for container {container_id[:12]} under {root}")


@dataclass
class CgroupSource:
    """One cgroup's memory usage: v2 ``memory.current`` or v1 ``memory.usage_in_bytes``."""

    file: Path
    name: str = "cgroup"

    @property
    def version(self) -> int:
        return 2 if self.file.name == "memory.current" else 1

    def read(self) -> int:
        try:
            return int(self.file.read_text().strip())
        except (OSError, ValueError) as error:
            raise SourceUnavailable(f"{self.file}: {error}") from None

    def kernel_peak(self) -> int | None:
        """The kernel's own high-water mark, where the cgroup keeps one (v2 memory.peak, v1 max_usage)."""
        peak = self.file.with_name("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")
        try:
            return int(peak.read_text().strip())
        except (OSError, ValueError):
            return None


# -- NVML --------------------------------------------------------------------------------------
def _load_nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise SourceUnavailable("nvidia-ml-py (pynvml) is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise SourceUnavailable(f"NVML could not start: {error}") from None
    return pynvml


@dataclass
class NvmlDeviceSource:
    """Device memory in use on one GPU. Unified-memory boards (GB10) answer Not Supported."""

    index: int = 0
    nvml: Any = None  # the pynvml module (injectable: tests use a stand-in that raises NotSupported)
    name: str = "nvml_device"

    def read(self) -> int:
        nvml = self.nvml or _load_nvml()
        self.nvml = nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
        except nvml.NVMLError as error:
            raise SourceUnavailable(f"NVML device memory: {error}") from None


@dataclass
class NvmlProcessSource:
    """GPU memory NVML attributes to the given processes (summed over all devices)."""

    pids: Callable[[], Iterable[int]]
    nvml: Any = None
    name: str = "nvml_process"

    def read(self) -> int:
        nvml = self.nvml or _load_nvml()
        self.nvml = nvml
        wanted = set(self.pids())
        total, seen = 0, False
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                processes = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
                processes += list(nvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
                for process in processes:
                    if process.pid in wanted and process.usedGpuMemory is not None:
                        total += int(process.usedGpuMemory)
                        seen = True
        except nvml.NVMLError as error:
            raise SourceUnavailable(f"NVML per-process memory: {error}") from None
        if not seen:
            raise SourceUnavailable(f"NVML lists none of the engine's processes {sorted(wanted)[:8]}")
        return total


@dataclass
class ProcessRssSource:
    """Resident set size (``VmRSS``) of the given processes, from ``/proc/<pid>/status``."""

    pids: Callable[[], Iterable[int]]
    name: str = "process_rss"

    def read(self) -> int:
        total, seen = 0, False
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        seen = True
            except OSError:
                continue
        if not seen:
            raise SourceUnavailable("none of the engine's processes is readable in /proc")
        return total


@dataclass
class UnavailableSource:
    """A source known up front to be unreadable here: recorded with its reason, never as zero."""

    name: str
    reason: str

    def read(self) -> int:
        raise SourceUnavailable(self.reason)


# -- the sampler -------------------------------------------------------------------------------
@dataclass
class _Track:
    source: MemorySource
    baseline: int | None = None
    peak: int | None = None
    timeline: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class MemorySampler:
    """Samples every source every ``interval_s`` on a background thread; ``with`` starts/stops it."""

    def __init__(
        self, sources: Iterable[MemorySource], interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tracks = [_Track(source) for source in sources]
        self._interval = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def sample(self) -> None:
        now = self._clock() - self._started
        for track in self._tracks:
            try:
                value = track.source.read()
            except SourceUnavailable as error:
                if str(error) not in track.errors:
                    track.errors.append(str(error))
                continue
            track.baseline = value if track.baseline is None else track.baseline
            track.peak = value if track.peak is None else max(track.peak, value)
            track.timeline.append((round(now, 4), value))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._started = self._clock()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="voxbench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()

    def results(self) -> dict[str, Any]:
        """Per source: available, peak, baseline, peak delta, timeline; or why it is unavailable."""
        out: dict[str, Any] = {}
        for track in self._tracks:
            if not track.timeline:
                out[track.source.name] = {"available": False, "reason": "; ".join(track.errors) or "never sampled"}
                continue
            assert track.baseline is not None and track.peak is not None  # the first sample sets both
            entry: dict[str, Any] = {
                "available": True,
                "unit": "bytes",
                "baseline": track.baseline,
                "peak": track.peak,
                "peak_delta": track.peak - track.baseline,
                "samples": len(track.timeline),
                "interval_s": self._interval,
                "timeline": track.timeline,
            }
            if track.errors:
                entry["errors"] = track.errors
            if isinstance(track.source, CgroupSource):
                entry["cgroup_version"] = track.source.version
                entry["kernel_peak"] = track.source.kernel_peak()
            out[track.source.name] = entry
        return out
