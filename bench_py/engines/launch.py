"""Version-aware launch: the engine's own reported version picks the launch flags, and a memory
budget becomes ``gpu_memory_utilization`` through a patched copy of the stage config.

vLLM-Omni renamed flags between releases, and its stage config hard-codes
``gpu_memory_utilization`` (0.8 or 0.9 of the device): on a 128 GB unified-memory GB10 beside a
running LLM, that is more than is free, and no command-line flag overrides it. So voxbench asks
the engine for its version (not the image tag, which lied on the manual run), chooses the flags
configured for that version, writes a stage config with the utilization the budget allows, and
mounts it. After start-up it reads back what the engine loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

MAX_UTILIZATION = 0.95


class LaunchError(RuntimeError):
    """No launch plan: the version has no configured flags, or the budget cannot be met."""


def total_memory_gb(configured: float | None) -> tuple[float, str]:
    """The accelerator's memory: configured, else NVML's device 0, else the host's MemTotal
    (unified memory, or no GPU at all, as in the embedded default)."""
    if configured:
        return configured, "candidate.launch.total_memory_gb"
    try:
        import pynvml

        pynvml.nvmlInit()
        total = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total
        return total / 1e9, "NVML device 0 total"
    except Exception:  # no library, no driver, no device, or "Not Supported" on unified memory
        pass
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / 1e9, "/proc/meminfo MemTotal"
    raise LaunchError("cannot tell the accelerator's memory: set candidate.launch.total_memory_gb")


def utilization_for(budget_gb: float, total_gb: float) -> float:
    value = round(budget_gb / total_gb, 3)
    if not 0 < value <= MAX_UTILIZATION:
        raise LaunchError(
            f"a budget of {budget_gb:g} GB is {value:.0%} of {total_gb:.1f} GB; it must be above 0 and at most "
            f"{MAX_UTILIZATION:.0%}"
        )
    return value


def flags_for(version: str, flags_by_version: dict[str, list[str]]) -> tuple[str, list[str]]:
    """The flags of the longest configured version prefix that the reported version starts with."""
    # "0.16" covers 0.16, 0.16.2 and 0.16.2rc1, never 0.160: a key ends where a number ends.
    matches = [
        key for key in flags_by_version if version.startswith(key) and not version[len(key) : len(key) + 1].isdigit()
    ]
    if not matches:
        raise LaunchError(
            f"the engine reports version {version}, and candidate.launch.flags_by_version has flags for "
            f"{', '.join(sorted(flags_by_version)) or 'no version'} only"
        )
    key = max(matches, key=len)
    return key, list(flags_by_version[key])


def patched_stage_config(template: str | None, utilization: float) -> dict[str, Any]:
    """The stage config with every stage's ``engine_args.gpu_memory_utilization`` set."""
    data: dict[str, Any] = {"stage_args": [{"stage_id": 0, "engine_args": {}}]}
    if template:
        loaded = yaml.safe_load(Path(template).expanduser().read_text())
        if not isinstance(loaded, dict) or not isinstance(loaded.get("stage_args"), list):
            raise LaunchError(f"{template} is not a stage config: it has no stage_args list")
        data = loaded
    for stage in data["stage_args"]:
        stage.setdefault("engine_args", {})["gpu_memory_utilization"] = utilization
    return data


def plan(launch: Any, version: str, run_dir: Path) -> dict[str, Any]:
    """Flags for ``version`` and, with a memory budget, the patched stage config written into the
    run directory (JSON syntax: every YAML reader takes it)."""
    key, flags = flags_for(version, launch.flags_by_version)
    result: dict[str, Any] = {"engine_version": version, "flags_for": key, "flags": flags}
    if launch.memory_budget_gb is not None:
        total, source = total_memory_gb(launch.total_memory_gb)
        utilization = utilization_for(launch.memory_budget_gb, total)
        stage = run_dir / "stage-config.yaml"
        stage.write_text(json.dumps(patched_stage_config(launch.stage_config_template, utilization), indent=2) + "\n")
        result.update(
            memory_budget_gb=launch.memory_budget_gb,
            total_memory_gb=round(total, 2),
            total_memory_source=source,
            gpu_memory_utilization=utilization,
            stage_config=str(stage),
        )
    return result


def fill(flags: list[str], stage_config_path: str | None) -> list[str]:
    if any("{stage_config}" in flag for flag in flags) and not stage_config_path:
        raise LaunchError("the launch flags name {stage_config}, but candidate.launch.memory_budget_gb is not set")
    return [flag.replace("{stage_config}", stage_config_path or "") for flag in flags]


def check_loaded(plan_: dict[str, Any], reported: dict[str, Any]) -> str | None:
    """Why what the engine reports differs from what was set, or None."""
    if reported.get("version") not in (None, plan_["engine_version"]):
        return f"the engine serves version {reported.get('version')}, not the {plan_['engine_version']} it reported"
    wanted = plan_.get("gpu_memory_utilization")
    loaded = reported.get("gpu_memory_utilization")
    if wanted is not None and loaded is not None and abs(float(loaded) - wanted) > 1e-6:
        return f"the engine loaded gpu_memory_utilization {loaded}, not the {wanted} voxbench set"
    return None
