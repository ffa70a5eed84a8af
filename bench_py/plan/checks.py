"""Every check a plan makes: against what is known of the real engines (static), and against the
host's own facts (live)."""

from __future__ import annotations

from urllib.parse import urlparse

from bench_py.config.model import Config
from bench_py.engines import standin
from bench_py.plan.facts import Finding, HostFacts

#: A ready timeout below this cannot hold a vLLM-Omni start (two stages, CUDA graph capture).
MIN_READY_TIMEOUT_S = 300


def static_checks(config: Config, findings: list[Finding]) -> None:
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


def live_checks(config: Config, facts: HostFacts, findings: list[Finding]) -> None:
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
