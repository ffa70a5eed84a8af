"""Memory sources: each figure tagged with its source; unavailable is recorded, never zero."""

from types import SimpleNamespace

import pynvml
import pytest

from bench_py.measure.memory import (
    CgroupSource,
    MeminfoSource,
    MemorySampler,
    NvmlDeviceSource,
    NvmlProcessSource,
    SourceUnavailable,
    cgroup_memory_file,
)

CID = "f" * 64


def test_cgroup_v2_reader_on_fixture_files(tmp_path):
    """cgroup v2 does not exist on this machine (v1 only): its reader is tested on files laid out as v2 has them."""
    scope = tmp_path / "system.slice" / f"docker-{CID}.scope"
    scope.mkdir(parents=True)
    (scope / "memory.current").write_text("123456789\n")
    (scope / "memory.peak").write_text("223456789\n")
    source = CgroupSource(cgroup_memory_file(CID, tmp_path))
    assert source.version == 2
    assert source.read() == 123456789
    assert source.kernel_peak() == 223456789


def test_cgroup_v1_reader_on_fixture_files(tmp_path):
    group = tmp_path / "memory" / "docker" / CID
    group.mkdir(parents=True)
    (group / "memory.usage_in_bytes").write_text("4096\n")
    (group / "memory.max_usage_in_bytes").write_text("8192\n")
    source = CgroupSource(cgroup_memory_file(CID, tmp_path))
    assert (source.version, source.read(), source.kernel_peak()) == (1, 4096, 8192)


def test_missing_cgroup_is_unavailable(tmp_path):
    with pytest.raises(SourceUnavailable, match="no cgroup memory file"):
        cgroup_memory_file(CID, tmp_path)


def test_meminfo_is_total_minus_available(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n")
    assert MeminfoSource(path).read() == 600 * 1024
    assert MeminfoSource().read() > 0  # the real one here


class NotSupportedNvml:
    """An NVML stand-in as a GB10 board answers: device memory is Not Supported."""

    NVMLError = pynvml.NVMLError

    def nvmlDeviceGetHandleByIndex(self, index):
        return SimpleNamespace(index=index)

    def nvmlDeviceGetMemoryInfo(self, handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=41, usedGpuMemory=3 * 2**30), SimpleNamespace(pid=99, usedGpuMemory=2**30)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return []


def test_nvml_not_supported_falls_back_to_other_sources(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemAvailable: 400 kB\n")
    fake = NotSupportedNvml()
    sampler = MemorySampler(
        [NvmlDeviceSource(nvml=fake), NvmlProcessSource(lambda: [41], nvml=fake), MeminfoSource(meminfo)],
        interval_s=0.01,
    )
    with sampler:
        pass
    results = sampler.results()
    assert results["nvml_device"] == {"available": False, "reason": "NVML device memory: Not Supported"}
    assert results["nvml_process"]["peak"] == 3 * 2**30  # only the engine's process is counted
    assert results["meminfo"]["available"] and results["meminfo"]["peak"] == 600 * 1024


def test_sources_here_are_tagged_honestly():
    """No GPU here: NVML is unavailable with its reason; meminfo is available."""
    sampler = MemorySampler([NvmlDeviceSource(), MeminfoSource()], interval_s=0.01)
    with sampler:
        pass
    results = sampler.results()
    assert results["nvml_device"]["available"] is False
    assert "NVML" in results["nvml_device"]["reason"]
    assert "peak" not in results["nvml_device"]  # never a zero standing in for "unknown"
    assert results["meminfo"]["available"] and results["meminfo"]["peak"] >= results["meminfo"]["baseline"] > 0
