"""Version-aware launch: the engine's own reported version picks the launch flags, and a memory
budget reaches every stage of the engine's own stage config, in the ratio that config sets.

vLLM-Omni renamed its flags between releases, and its Voxtral stage config hard-codes
``gpu_memory_utilization`` per stage (0.8 and 0.1 of the device): on a 128 GB unified-memory GB10
beside a running LLM that is more than is free. On 0.18 no command-line flag overrides it (the
stage config wins the merge), so voxbench mounts a patched copy (``{stage_config}``); 0.30 takes
per-stage ``--stage-overrides`` (``{stage_overrides}``). voxbench asks the engine for its version
(not the image tag, which lied on the manual run), reads the engine's own stage config from the
image or venv it will run, and derives the budget from what is free now — on unified memory,
``MemAvailable``, not NVML's device total — minus a margin the user sets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_UTILIZATION = 0.95
PLACEHOLDERS = ("{stage_config}", "{stage_overrides}")


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


def mem_available_gb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    raise LaunchError("MemAvailable is missing from /proc/meminfo")


@dataclass(frozen=True)
class MemoryPlan:
    """The candidate's budget and the arithmetic behind it, as the results record it."""

    budget_gb: float
    derived: bool
    available_gb: float
    margin_gb: float
    cap_gb: float
    weights_gb: float
    total_gb: float
    total_source: str
    utilization: float  # budget / total: the share of the device every stage together may take
    arithmetic: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_plan(launch: Any, available_gb: float, total: tuple[float, str] | None = None) -> MemoryPlan:
    """A configured budget, or ``min(cap, MemAvailable - margin)``; refused, with the arithmetic,
    when it cannot hold the weights or is more than is free."""
    total_gb, total_source = total or total_memory_gb(launch.total_memory_gb)
    margin, cap, weights = launch.memory_margin_gb, launch.memory_budget_max_gb, launch.weights_gb
    if launch.memory_budget_gb is not None:
        budget, derived = float(launch.memory_budget_gb), False
        arithmetic = f"configured {budget:g} GB (candidate.launch.memory_budget_gb); {available_gb:.1f} GB available"
        if budget > available_gb:
            raise LaunchError(
                f"{arithmetic}: the budget is more than is free; lower it, or choose gemma_mode=pause-gemma"
            )
    else:
        budget, derived = round(min(cap, available_gb - margin), 2), True
        arithmetic = f"min(cap {cap:g} GB, MemAvailable {available_gb:.1f} GB - margin {margin:g} GB) = {budget:.1f} GB"
    if budget < weights or budget <= 0:
        raise LaunchError(
            f"{arithmetic}, which cannot hold the model's {weights:g} GB of weights "
            "(candidate.launch.weights_gb); free memory (gemma_mode=pause-gemma stops the co-tenant) "
            "or lower the margin"
        )
    utilization = round(budget / total_gb, 4)
    if not 0 < utilization <= MAX_UTILIZATION:
        raise LaunchError(f"{arithmetic} is {utilization:.0%} of {total_gb:.1f} GB; at most {MAX_UTILIZATION:.0%}")
    arithmetic += f" = {utilization:.2%} of {total_gb:.1f} GB ({total_source})"
    return MemoryPlan(
        budget,
        derived,
        round(available_gb, 2),
        margin,
        cap,
        weights,
        round(total_gb, 2),
        total_source,
        utilization,
        arithmetic,
    )


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


def stage_shares(config: dict[str, Any]) -> list[float]:
    """Each stage's ``gpu_memory_utilization``: 0.18's ``stage_args[].engine_args`` or 0.30's ``stages[]``."""
    try:
        if "stage_args" in config:
            return [float(stage["engine_args"]["gpu_memory_utilization"]) for stage in config["stage_args"]]
        return [float(stage["gpu_memory_utilization"]) for stage in config["stages"]]
    except (KeyError, TypeError, ValueError) as error:
        raise LaunchError(f"the stage config names no gpu_memory_utilization for every stage ({error})") from None


def split(utilization: float, shares: list[float]) -> list[float]:
    """A total share over the stages, in the ratio of the engine's own config (0.8 : 0.1 stays 8 : 1)."""
    whole = sum(shares)
    if not shares or whole <= 0:
        raise LaunchError("the stage config has no stage with memory to scale")
    return [round(utilization * share / whole, 4) for share in shares]


def patched(config: dict[str, Any], utilizations: list[float]) -> dict[str, Any]:
    """The engine's own stage config, every stage's ``gpu_memory_utilization`` replaced."""
    stages = config["stage_args"] if "stage_args" in config else config["stages"]
    for stage, value in zip(stages, utilizations, strict=True):
        (stage.setdefault("engine_args", {}) if "stage_args" in config else stage)["gpu_memory_utilization"] = value
    return config


def plan(
    launch: Any,
    version: str,
    run_dir: Path,
    read_engine_file: Any,
    available_gb: float | None = None,
) -> dict[str, Any]:
    """Flags for ``version`` and, when they take the memory budget, the budget's arithmetic, its
    split over the stages, and the patched stage config (written into the run directory) or the
    per-stage overrides. ``read_engine_file(path)`` reads a file of the engine's own package."""
    key, flags = flags_for(version, launch.flags_by_version)
    result: dict[str, Any] = {"engine_version": version, "flags_for": key, "flags": flags}
    if not any(placeholder in flag for flag in flags for placeholder in PLACEHOLDERS):
        return result
    memory = memory_plan(launch, mem_available_gb() if available_gb is None else available_gb)
    if launch.stage_config_template:
        source = str(Path(launch.stage_config_template).expanduser())
        text = Path(source).read_text()
    else:
        if key not in launch.stage_configs:
            raise LaunchError(
                f"candidate.launch.stage_configs names no stage config for version {key}: the budget cannot be split"
            )
        source = launch.stage_configs[key]
        text = read_engine_file(source)
    own = yaml.safe_load(text)
    if not isinstance(own, dict) or not ("stage_args" in own or "stages" in own):
        raise LaunchError(f"{source} is not a stage config: it has no stage_args or stages")
    shares = stage_shares(own)
    per_stage = split(memory.utilization, shares)
    result.update(
        memory=memory.as_dict(),
        stage_config_source=source,
        own_stage_utilizations=shares,
        stage_utilizations=per_stage,
        gpu_memory_utilization=memory.utilization,
    )
    if any("{stage_config}" in flag for flag in flags):
        stage = run_dir / "stage-config.yaml"
        stage.write_text(yaml.safe_dump(patched(own, per_stage), sort_keys=False))
        result["stage_config"] = str(stage)
    if any("{stage_overrides}" in flag for flag in flags):
        overrides = {str(i): {"gpu_memory_utilization": value} for i, value in enumerate(per_stage)}
        result["stage_overrides"] = json.dumps(overrides, separators=(",", ":"))
    return result


def fill(flags: list[str], stage_config_path: str | None, stage_overrides: str | None = None) -> list[str]:
    filled = []
    for flag in flags:
        if "{stage_config}" in flag and not stage_config_path:
            raise LaunchError("the launch flags name {stage_config}, and no stage config was planned")
        if "{stage_overrides}" in flag and not stage_overrides:
            raise LaunchError("the launch flags name {stage_overrides}, and no overrides were planned")
        filled.append(
            flag.replace("{stage_config}", stage_config_path or "").replace("{stage_overrides}", stage_overrides or "")
        )
    return filled


def overrides_utilizations(overrides: str) -> list[float]:
    """Each stage's share in a ``--stage-overrides`` JSON, in stage order."""
    data = json.loads(overrides)
    return [float(data[key]["gpu_memory_utilization"]) for key in sorted(data, key=int)]


def given_to_engine(argv: list[str], stage_config_text: str | None) -> list[float] | None:
    """The stage shares an engine was given: in its stage config file, or in ``--stage-overrides``."""
    if stage_config_text is not None:
        return stage_shares(yaml.safe_load(stage_config_text))
    if "--stage-overrides" in argv[:-1]:
        return overrides_utilizations(argv[argv.index("--stage-overrides") + 1])
    return None


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check_loaded(plan_: dict[str, Any], readback: dict[str, Any]) -> str | None:
    """Why what the running engine reports differs from what was launched, or None.

    ``readback``: ``engine_version`` (vLLM-Omni's, asked again of the running engine) and
    ``stage_utilizations`` (read back from what the engine was given), where they could be read."""
    again = readback.get("engine_version")
    if again is not None and again != plan_["engine_version"]:
        return (
            f"the running engine reports vLLM-Omni {again}, not the {plan_['engine_version']} it reported before start"
        )
    wanted, given = plan_.get("stage_utilizations"), readback.get("stage_utilizations")
    if wanted is not None and given is not None and [round(float(v), 4) for v in given] != wanted:
        return f"the engine was given stage utilizations {given}, not the {wanted} voxbench planned"
    return None


def pairing_note(engine_version: str, vllm_version: str | None) -> str | None:
    """vLLM-Omni runs on the vLLM of its own minor: say so when ``/version`` shows another."""
    if vllm_version and minor(vllm_version) != minor(engine_version):
        return (
            f"vLLM-Omni {engine_version} runs on vLLM {vllm_version}: their minors differ, which vLLM-Omni itself "
            "warns against (build a paired image: voxbench images pair)"
        )
    return None
