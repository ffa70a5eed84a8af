"""The candidate as the configuration would start it: each install path's command, the 2A container,
the launch line of every vLLM-Omni release, the memory arithmetic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench_py.config.model import Config
from bench_py.engines import launch
from bench_py.engines.container import ContainerSpec
from bench_py.plan.facts import Finding, HostFacts


# -- the plan ------------------------------------------------------------------------------------------
def known_releases() -> dict[str, Any]:
    """The pinned vLLM-Omni releases' own facts (flags, stage configs), from their wheels."""
    from bench_py.standins import upstream

    known: dict[str, Any] = {}
    for version, release in upstream.RELEASES.items():
        entry: dict[str, Any] = {"release": release}
        try:
            source = upstream.Source(upstream.ensure_wheel(version))
            entry["stage_config"] = yaml.safe_load(upstream.stage_config_text(source))
        except upstream.UpstreamError as error:
            entry["error"] = str(error)
        known[release.minor] = entry
    return known


def container_plan(config: Config) -> dict[str, Any]:
    cfg = config.candidate
    spec = ContainerSpec(
        "<RUN-ID>",
        cfg.image,
        cfg.command,
        cfg.container_port,
        cfg.port,
        Path(config.paths.token_file),
        cfg.hf_token_mount,
        cpuset_cpus=cfg.cpuset_cpus,
        network_mode=cfg.network_mode,
        hf_cache=(cfg.hf_cache_dir, cfg.hf_cache_mount) if cfg.hf_cache_dir else None,
        ipc_mode=cfg.ipc_mode,
        shm_size=cfg.shm_size,
    )
    kwargs = spec.create_kwargs()
    # As configured (paths on the host, ~ and all), not as this machine would resolve them.
    mounts = [f"{config.paths.token_file} -> {cfg.hf_token_mount} (ro)"] if cfg.token_mode == "file" else []
    if cfg.hf_cache_dir:
        mounts.append(f"{cfg.hf_cache_dir} -> {cfg.hf_cache_mount} (rw)")
    return {
        "image": cfg.image,
        "entrypoint": kwargs["entrypoint"],
        "command": kwargs["command"],
        "name": kwargs["name"],
        "labels": sorted(kwargs["labels"]),
        "ports": kwargs.get("ports") or f"none: network_mode {cfg.network_mode}",
        "mounts": mounts,
        "environment": kwargs.get("environment", {}),
        "gpu_request": "all GPUs (device request) when the daemon lists the nvidia runtime",
        "ipc_mode": cfg.ipc_mode,
        "shm_size": cfg.shm_size,
        "token_route": "read-only file mount + HF_TOKEN_PATH"
        if cfg.token_mode == "file"
        else "env-file: HF_TOKEN in the environment (docker inspect shows it)",
        "cpuset_cpus": cfg.cpuset_cpus,
    }


def paths_plan(config: Config) -> list[dict[str, Any]]:
    cfg = config.candidate
    out = []
    for name in cfg.install_paths:
        entry: dict[str, Any] = {"install_path": name}
        if name == "2A":
            entry["container"] = container_plan(config)
        elif name == "2B":
            entry.update(
                command=cfg.process.command, venv=cfg.process.venv, version_command=cfg.process.version_command
            )
        elif name == "2C":
            entry.update(loader=cfg.in_process.loader, model=cfg.in_process.model_path or f"{cfg.model} (HF cache)")
        else:
            entry.update(command=cfg.batch.command, voice=cfg.batch.voice)
        out.append(entry)
    return out


def memory_plan(config: Config, facts: HostFacts | None, findings: list[Finding]) -> dict[str, Any] | None:
    cfg = config.candidate.launch
    if not any("{stage_" in flag for flags in cfg.flags_by_version.values() for flag in flags):
        return None
    if facts is None:
        if cfg.memory_budget_gb is not None and cfg.memory_budget_gb < cfg.weights_gb:
            findings.append(
                Finding(
                    "memory_budget",
                    False,
                    f"candidate.launch.memory_budget_gb {cfg.memory_budget_gb:g} GB cannot hold the model's "
                    f"{cfg.weights_gb:g} GB of weights",
                )
            )
        elif cfg.memory_budget_gb is None and cfg.memory_budget_max_gb < cfg.weights_gb:
            findings.append(
                Finding(
                    "memory_budget",
                    False,
                    f"candidate.launch.memory_budget_max_gb {cfg.memory_budget_max_gb:g} GB cannot hold the model's "
                    f"{cfg.weights_gb:g} GB of weights",
                )
            )
        else:
            findings.append(
                Finding("memory_budget", None, "the budget is derived from MemAvailable on the host (PREFLIGHT)")
            )
        return {
            "rule": "configured"
            if cfg.memory_budget_gb is not None
            else "min(memory_budget_max_gb, MemAvailable - memory_margin_gb)",
            "budget_gb": cfg.memory_budget_gb,
            "margin_gb": cfg.memory_margin_gb,
            "cap_gb": cfg.memory_budget_max_gb,
            "weights_gb": cfg.weights_gb,
        }
    total = (
        (facts.nvml_total_gb, "NVML device 0 total")
        if facts.nvml_total_gb
        else (facts.mem_total_gb, "MemTotal (unified memory)")
    )
    if cfg.total_memory_gb:
        total = (cfg.total_memory_gb, "candidate.launch.total_memory_gb")
    try:
        plan = launch.memory_plan(cfg, facts.mem_available_gb, total)
    except launch.LaunchError as error:
        paused = config.gemma_mode == "pause-gemma" and config.cotenant.control.kind != "none"
        # pause-gemma frees the co-tenant's memory before the launch, where the budget is derived again.
        findings.append(
            Finding("memory_budget", None, f"{error}; derived again at launch, after pause-gemma's pause")
            if paused
            else Finding("memory_budget", False, str(error))
        )
        return None
    findings.append(Finding("memory_budget", True, plan.arithmetic))
    return plan.as_dict()


def launch_lines(
    config: Config, releases: dict[str, Any], memory: dict[str, Any] | None, findings: list[Finding]
) -> dict[str, Any]:
    """The launch line of every release the configuration has flags for, checked against that release."""
    cfg = config.candidate
    lines: dict[str, Any] = {}
    for key, flags in cfg.launch.flags_by_version.items():
        known = releases.get(launch.minor(key))
        line: dict[str, Any] = {"flags": flags}
        if known is None:
            findings.append(
                Finding(
                    f"launch {key}", None, f"vLLM-Omni {key} is not a release voxbench pins: its flags are not checked"
                )
            )
            lines[key] = line
            continue
        release = known["release"]
        accepted = {
            release.stage_config_flag,
            *([release.stage_overrides_flag] if release.stage_overrides_flag else []),
        }
        other = {
            f
            for r in releases.values()
            for f in (r["release"].stage_config_flag, r["release"].stage_overrides_flag)
            if f
        } - accepted
        refused = [flag for flag in flags if flag in other]
        if refused:
            findings.append(
                Finding(
                    f"launch {key}",
                    False,
                    f"vLLM-Omni {release.version} refuses {', '.join(refused)} (unrecognized arguments, exit 2); it "
                    f"takes {', '.join(sorted(accepted))}",
                )
            )
        own = known.get("stage_config")
        if own is None:
            findings.append(
                Finding(
                    f"stage config {key}",
                    None,
                    f"vLLM-Omni {release.version}'s wheel is not available here ({known.get('error')}): its Voxtral "
                    "stage config is not checked",
                )
            )
        shares = launch.stage_shares(own) if own else None
        line["engine_stages"] = len(shares) if shares else None
        if cfg.launch.stage_config_template:
            template = yaml.safe_load(Path(cfg.launch.stage_config_template).expanduser().read_text())
            try:
                mine = launch.stage_shares(template)
            except launch.LaunchError as error:
                findings.append(Finding(f"stage config {key}", False, f"{cfg.launch.stage_config_template}: {error}"))
                mine = []
            if shares and len(mine) != len(shares):
                findings.append(
                    Finding(
                        f"stage config {key}",
                        False,
                        f"candidate.launch.stage_config_template has {len(mine)} stage(s); vLLM-Omni "
                        f"{release.version}'s Voxtral config has {len(shares)}: the budget would not reach every stage",
                    )
                )
            shares = mine or shares
        elif cfg.launch.stage_configs.get(key) != release.stage_config and any("{stage_" in f for f in flags):
            findings.append(
                Finding(
                    f"stage config {key}",
                    False,
                    f"candidate.launch.stage_configs[{key!r}] is {cfg.launch.stage_configs.get(key)!r}; vLLM-Omni "
                    f"{release.version} ships Voxtral's at {release.stage_config}",
                )
            )
        if memory and memory.get("utilization") and shares:
            per_stage = launch.split(memory["utilization"], shares)
            overrides = json.dumps(
                {str(i): {"gpu_memory_utilization": u} for i, u in enumerate(per_stage)}, separators=(",", ":")
            )
            line["stage_utilizations"] = per_stage
            line["flags"] = launch.fill(flags, cfg.launch.stage_config_mount, overrides)
        line["command"] = [*cfg.command, *line["flags"]]
        lines[key] = line
    return lines
