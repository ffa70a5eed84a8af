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
from dataclasses import asdict
from typing import Any

from bench_py.config.model import Config
from bench_py.engines.http import ChatterboxTarget, reference_audio_value
from bench_py.plan.checks import live_checks, static_checks
from bench_py.plan.engine import known_releases, launch_lines, memory_plan, paths_plan
from bench_py.plan.facts import Finding, HostFacts, gather_facts

__all__ = ["Finding", "HostFacts", "gather_facts", "make_plan", "render"]


def make_plan(config: Config, facts: HostFacts | None = None, releases: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a run would do on the host, and every check against the facts (``ok`` False fails the plan)."""
    findings: list[Finding] = []
    static_checks(config, findings)
    memory = memory_plan(config, facts, findings)
    lines = launch_lines(config, known_releases() if releases is None else releases, memory, findings)
    if facts is not None:
        live_checks(config, facts, findings)
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
        "install_paths": paths_plan(config),
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
