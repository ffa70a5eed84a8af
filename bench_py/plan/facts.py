"""What a plan is made of (findings) and what only the host can say (its facts)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench_py.config.model import Config
from bench_py.engines import launch


@dataclass
class Finding:
    check: str
    ok: bool | None  # None: only the host can tell (not checked from here)
    message: str


@dataclass
class HostFacts:
    """What only the GPU host can say, gathered there (nothing is started)."""

    host: str
    arch: str
    mem_available_gb: float
    mem_total_gb: float
    nvml_total_gb: float | None = None
    docker: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)
    cotenant: dict[str, Any] = field(default_factory=dict)
    control_running: bool | None = None
    ports: dict[str, bool] = field(default_factory=dict)
    weights_files: int | None = None
    weights_missing: list[str] | None = None  # what a cut download left out (None: not known)


# -- the host's side -------------------------------------------------------------------------------
def gather_facts(config: Config) -> HostFacts:
    import httpx

    from bench_py.engines.docker_client import docker_client
    from bench_py.engines.paths import host_platform, image_platforms
    from bench_py.run import preflight

    meminfo = {
        line.split(":")[0]: int(line.split()[1]) * 1024 / 1e9 for line in Path("/proc/meminfo").read_text().splitlines()
    }
    facts = HostFacts(
        socket.gethostname(), host_platform(), round(meminfo["MemAvailable"], 2), round(meminfo["MemTotal"], 2)
    )
    try:
        nvml_total, source = launch.total_memory_gb(None)
        facts.nvml_total_gb = round(nvml_total, 2) if source.startswith("NVML") else None
    except launch.LaunchError:
        pass
    try:
        client = docker_client(config.preflight.docker_url)
        info = client.info()
        facts.docker = {
            "answers": True,
            "runtimes": sorted(info.get("Runtimes") or {}),
            "version": info.get("ServerVersion"),
        }
        try:
            offered, where = image_platforms(client, config.candidate.image)
            labels = {}
            if where == "local image":
                labels = dict(client.images.get(config.candidate.image).labels or {})
            facts.image = {"platforms": offered, "source": where, "labels": labels}
        except Exception as error:  # not here, registry unreachable: the plan says which
            facts.image = {"platforms": [], "error": f"{type(error).__name__}: {error}"}
    except Exception as error:
        facts.docker = {"answers": False, "error": f"{type(error).__name__}: {error}"}
    base = base_url(config.cotenant.url)
    try:
        response = httpx.get(f"{base}/v1/models", timeout=5.0)
        models = [m.get("id") for m in response.json().get("data", [])] if response.status_code == 200 else []
        facts.cotenant = {"answers": response.status_code == 200, "status": response.status_code, "models": models}
    except (httpx.HTTPError, ValueError, AttributeError) as error:
        facts.cotenant = {"answers": False, "error": f"{type(error).__name__}: {error}"}
    if config.gemma_mode == "pause-gemma" and config.cotenant.control.kind != "none":
        facts.control_running = preflight._cotenant_running(config)
    facts.ports = {str(config.candidate.port): preflight.port_is_free(config.candidate.port)}
    if config.candidate.hf_cache_dir:
        from bench_py.hosts.prefetch import cached_files, missing_files

        try:
            facts.weights_files = len(cached_files(config.candidate.model, config.candidate.hf_cache_dir))
            facts.weights_missing = missing_files(config.candidate.model, config.candidate.hf_cache_dir)
        except ImportError:
            facts.weights_files = None
    return facts


def base_url(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"
