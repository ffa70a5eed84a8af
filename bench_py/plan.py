"""``voxbench plan``: what a run would do on a host, and every fact it fails, starting nothing.

Two layers. :func:`make_plan` is pure: the configuration alone says each install path's command,
the 2A container spec, the launch line of every vLLM-Omni release the configuration knows, the
memory arithmetic, the co-tenant control of the chosen ``gemma_mode`` and what the incumbent is
sent — and checks it against what is known of the real engines (the pinned vLLM-Omni releases'
own flags and stage configs, the model's weights, stand-ins). :func:`gather_facts` runs on the
host (``ansible-playbook bench.yml --check``) and adds what only the host can say: its
architecture and free memory, the image's platforms, whether the co-tenant answers where the
configuration says, whether the control container runs, the ports, the cached weights.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from bench_py.config.model import Config
from bench_py.engines import launch, standin
from bench_py.engines.container import ContainerSpec
from bench_py.engines.http import ChatterboxTarget, reference_audio_value

#: A ready timeout below this cannot hold a vLLM-Omni start (two stages, CUDA graph capture).
MIN_READY_TIMEOUT_S = 300


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
        client = preflight.docker_client(config.preflight.docker_url)
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
    base = _base_url(config.cotenant.url)
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


def _base_url(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"


# -- the plan ------------------------------------------------------------------------------------------
def _releases() -> dict[str, Any]:
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


def _container(config: Config) -> dict[str, Any]:
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


def _paths(config: Config) -> list[dict[str, Any]]:
    cfg = config.candidate
    out = []
    for name in cfg.install_paths:
        entry: dict[str, Any] = {"install_path": name}
        if name == "2A":
            entry["container"] = _container(config)
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


def _memory(config: Config, facts: HostFacts | None, findings: list[Finding]) -> dict[str, Any] | None:
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
        from bench_py.run.preflight import pause_frees_memory

        # pause-gemma frees the co-tenant's memory before the launch, where the budget is derived again.
        findings.append(
            Finding("memory_budget", None, f"{error}; derived again at launch, after pause-gemma's pause")
            if pause_frees_memory(config)
            else Finding("memory_budget", False, str(error))
        )
        return None
    findings.append(Finding("memory_budget", True, plan.arithmetic))
    return plan.as_dict()


def _launch_lines(
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


def _static_checks(config: Config, findings: list[Finding]) -> None:
    cfg = config.candidate
    allowed = config.allow_standin_engines
    for name in cfg.install_paths:
        why = standin.path_reason(name, cfg)
        if why:
            findings.append(
                Finding(
                    f"{name} engine",
                    bool(allowed),
                    f"{why}" + ("" if allowed else f"; it would be blocked ({standin.BLOCKED})"),
                )
            )
    version = cfg.launch.version_command or []
    if any(standin.MODULE in part for part in version) and not allowed:
        findings.append(
            Finding(
                "version command",
                False,
                f"candidate.launch.version_command {version} runs voxbench's stand-in: it exits non-zero in the real "
                "vLLM-Omni image (the default reads vllm-omni's version from its package metadata)",
            )
        )
    elif version and version[0].endswith("vllm-omni") and "--omni" not in version:
        findings.append(
            Finding("version command", False, f"{version} prints vLLM's version, not vLLM-Omni's: add --omni")
        )
    if cfg.command and cfg.command[0].endswith(("vllm-omni", "vllm")) and "--omni" not in cfg.command:
        findings.append(
            Finding(
                "launch command",
                False,
                f"candidate.command {cfg.command} has no --omni: that is plain vLLM, which cannot load Voxtral",
            )
        )
    real_2a = "2A" in cfg.install_paths and not standin.path_reason("2A", cfg)
    if real_2a and cfg.ready_timeout_s < MIN_READY_TIMEOUT_S:
        findings.append(
            Finding(
                "ready timeout",
                False,
                f"candidate.ready_timeout_s {cfg.ready_timeout_s:g} s cannot hold a vLLM-Omni start (two stages, CUDA "
                f"graph capture); {MIN_READY_TIMEOUT_S} s at least, with the weights prefetched",
            )
        )
    if real_2a and not cfg.hf_cache_dir:
        findings.append(
            Finding(
                "hf cache",
                False,
                "candidate.hf_cache_dir is not set: the weights would be downloaded into the container at every "
                "start, under the gate",
            )
        )
    if real_2a and not cfg.ipc_mode and not cfg.shm_size:
        findings.append(
            Finding(
                "shared memory",
                False,
                "vLLM's container docs ask for ipc_mode host or a larger shm_size: its stages share memory through "
                "/dev/shm",
            )
        )
    if urlparse(config.cotenant.url).port == cfg.port:
        findings.append(
            Finding("ports", False, f"the candidate's port {cfg.port} is the co-tenant's ({config.cotenant.url})")
        )
    if config.gemma_mode == "pause-gemma" and (
        config.cotenant.control.kind == "none" or not config.cotenant.control.name
    ):
        findings.append(
            Finding(
                "cotenant control",
                False,
                "gemma_mode=pause-gemma needs cotenant.control.kind and .name (the co-tenant's container or unit)",
            )
        )


def _live_checks(config: Config, facts: HostFacts, findings: list[Finding]) -> None:
    cfg = config.candidate
    if not facts.docker.get("answers"):
        findings.append(Finding("docker", False, f"Docker does not answer on the host: {facts.docker.get('error')}"))
    elif "2A" in cfg.install_paths:
        offered = facts.image.get("platforms") or []
        if not offered:
            findings.append(
                Finding(
                    "image", False, f"{cfg.image}: {facts.image.get('error') or 'not on the host nor in its registry'}"
                )
            )
        elif not any(p == facts.arch or p.startswith(facts.arch + "/") for p in offered):
            findings.append(
                Finding(
                    "image",
                    False,
                    f"{cfg.image} is built for {', '.join(offered)}; the host is {facts.arch}: build a paired image "
                    "(voxbench images pair)",
                )
            )
        else:
            findings.append(Finding("image", True, f"{cfg.image} offers {facts.arch} ({facts.image.get('source')})"))
        role = (facts.image.get("labels") or {}).get(standin.IMAGE_LABEL)
        if role:
            findings.append(
                Finding(
                    "2A engine",
                    bool(config.allow_standin_engines),
                    f"the image {cfg.image} is voxbench's stand-in ({standin.IMAGE_LABEL}={role})",
                )
            )
        elif "nvidia" not in (facts.docker.get("runtimes") or []):
            findings.append(
                Finding(
                    "gpu",
                    False,
                    f"Docker on the host has no NVIDIA runtime (runtimes: {facts.docker.get('runtimes')}): "
                    f"{cfg.image} would start without a GPU; install nvidia-container-toolkit",
                )
            )
    co = facts.cotenant
    if not co.get("answers"):
        findings.append(
            Finding(
                "cotenant",
                False,
                f"nothing answers as a chat server at {config.cotenant.url} "
                f"({co.get('error') or 'HTTP ' + str(co.get('status'))}): is the co-tenant on another port?",
            )
        )
    elif config.cotenant.model and config.cotenant.model not in co.get("models", []):
        findings.append(
            Finding(
                "cotenant",
                False,
                f"the co-tenant at {config.cotenant.url} serves {co.get('models')}, not cotenant.model "
                f"{config.cotenant.model!r}",
            )
        )
    else:
        findings.append(
            Finding("cotenant", True, f"the co-tenant answers at {config.cotenant.url} serving {co.get('models')}")
        )
    if facts.control_running is False:
        control = config.cotenant.control
        findings.append(
            Finding(
                "cotenant control",
                False,
                f"pause-gemma would stop the {control.kind} {control.name}, which is not running on the host",
            )
        )
    for port, free in facts.ports.items():
        if not free:
            findings.append(Finding("ports", False, f"port {port} is taken on the host"))
    if facts.weights_files == 0 and not facts.weights_missing:
        findings.append(
            Finding("weights", False, f"{cfg.model} is not in {cfg.hf_cache_dir}: run voxbench prefetch on the host")
        )
    elif facts.weights_missing:
        findings.append(
            Finding(
                "weights",
                False,
                f"the download of {cfg.model} was cut short ({len(facts.weights_missing)} files missing): run voxbench "
                "prefetch on the host again",
            )
        )


def make_plan(config: Config, facts: HostFacts | None = None, releases: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a run would do on the host, and every check against the facts (``ok`` False fails the plan)."""
    findings: list[Finding] = []
    _static_checks(config, findings)
    memory = _memory(config, facts, findings)
    lines = _launch_lines(config, _releases() if releases is None else releases, memory, findings)
    if facts is not None:
        _live_checks(config, facts, findings)
    incumbent = config.incumbent
    sent: dict[str, Any] = {"api": incumbent.api, "url": incumbent.url, "host": incumbent.host}
    if incumbent.api == "chatterbox":
        reference = (
            reference_audio_value(incumbent.reference_audio, config.reference.name, "")
            if incumbent.reference_audio.send_as == "path"
            else "<the clip, base64>"
        )
        body = (
            ChatterboxTarget(
                incumbent.url, reference, incumbent.exaggeration, incumbent.cfg_weight, incumbent.temperature
            )
            .request("<text>", "cloned")
            .body
        )
        sent.update(
            body=body, token_header=incumbent.token_header, preset="the server's built-in voice (no reference_audio)"
        )
    control = config.cotenant.control
    cotenant = {
        "url": config.cotenant.url,
        "model": config.cotenant.model or "the one model GET /v1/models lists",
        "gemma_mode": config.gemma_mode,
        "control": f"gate: abort when the p50 of the last {config.cotenant.gate.window} probes passes "
        f"{config.cotenant.gate.max_ratio:g}x the baseline"
        if config.gemma_mode == "parallel"
        else f"stop the {control.kind} {control.name} after BASELINE, start it again in TEARDOWN",
    }
    return {
        "host": facts.host if facts else None,
        "facts": asdict(facts) if facts else None,
        "allow_standin_engines": config.allow_standin_engines,
        "install_paths": _paths(config),
        "launch": {"version_command": config.candidate.launch.version_command, "by_version": lines},
        "memory": memory,
        "cotenant": cotenant,
        "incumbent": sent,
        "checks": [asdict(f) for f in findings],
        "ok": not any(f.ok is False for f in findings),
    }


def render(plan: dict[str, Any], host: str) -> str:
    """The plan as a person reads it: what would run, then every check (FAIL, ok, or not checked)."""
    lines = [
        f"== {host} ({'facts read on the host' if plan.get('facts') else 'configuration only: the host was not asked'})"
    ]
    for entry in plan["install_paths"]:
        name = entry["install_path"]
        if "container" in entry:
            spec = entry["container"]
            lines.append(f"  {name} container  {spec['image']}  entrypoint {spec['entrypoint']}")
            lines.append(
                f"     mounts {spec['mounts']}  ports {spec['ports']}  ipc {spec['ipc_mode']}  shm {spec['shm_size']}"
            )
            lines.append(
                f"     token {spec['token_route']}  gpu {spec['gpu_request']}  labels {', '.join(spec['labels'])}"
            )
        else:
            detail = {k: v for k, v in entry.items() if k != "install_path"}
            lines.append(f"  {name} {json.dumps(detail)}")
    for version, line in plan["launch"]["by_version"].items():
        lines.append(f"  launch vLLM-Omni {version}: {' '.join(line.get('command') or line['flags'])}")
        if line.get("stage_utilizations"):
            lines.append(
                f"     stages {line['stage_utilizations']} (engine's own config: {line.get('engine_stages')} stages)"
            )
    if plan.get("memory"):
        lines.append(f"  memory {plan['memory'].get('arithmetic') or plan['memory']}")
    lines.append(
        f"  co-tenant {plan['cotenant']['url']} ({plan['cotenant']['gemma_mode']}): {plan['cotenant']['control']}"
    )
    lines.append(
        f"  incumbent {plan['incumbent']['url']} ({plan['incumbent']['api']}): "
        f"{json.dumps(plan['incumbent'].get('body'))}"
    )
    for check in plan["checks"]:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[check["ok"]]
        lines.append(f"  [{mark}] {check['check']}: {check['message']}")
    lines.append(f"  plan {'passes' if plan['ok'] else 'FAILS'}")
    return "\n".join(lines)
