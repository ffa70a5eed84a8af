"""PREFLIGHT: every check that must pass before anything is started on the host.

Each check returns one clear sentence; a failed one says what to do. Nothing here changes
the host.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_py.config.model import Config
from bench_py.engines.docker_client import docker_client
from bench_py.engines.launch import mem_available_gb
from bench_py.files import free_bytes, nearest_existing
from bench_py.voice.references import ReferenceError, verify


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    detail: dict[str, Any] | None = None
    warning: bool = False  # passed, but the user should know (recorded in the run)


def check_docker(config: Config) -> Check:
    try:
        client = docker_client(config.preflight.docker_url)
        version = client.version()
    except Exception as error:  # the SDK raises several unrelated types for "no daemon"
        where = config.preflight.docker_url or os.environ.get("DOCKER_HOST") or "the default socket"
        if "Permission denied" in str(error):
            return Check(
                "docker",
                False,
                f"this user may not use the Docker socket at {where}: add it to the docker group (setup.yml "
                "does) and start a new login session (or tmux server) so the group applies",
            )
        return Check(
            "docker",
            False,
            f"Docker does not answer at {where} ({type(error).__name__}); "
            "start the Docker daemon (systemctl start docker) and retry",
        )
    return Check(
        "docker",
        True,
        f"Docker {version.get('Version')} answers",
        {"version": version.get("Version"), "api_version": version.get("ApiVersion"), "arch": version.get("Arch")},
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(config: Config) -> Check:
    port = config.candidate.port
    if not port_is_free(port):
        return Check(
            "ports",
            False,
            f"port {port} on 127.0.0.1 is already in use; stop what holds it "
            f"(ss -ltnp 'sport = :{port}') or set candidate.port to a free port",
        )
    return Check("ports", True, f"port {port} is free", {"ports": [port]})


def check_token_file(config: Config) -> Check:
    path = Path(config.paths.token_file).expanduser()
    if not path.is_file():
        return Check(
            "token_file",
            False,
            f"the Hugging Face token file {path} does not exist; write your token "
            f"there (install -m 0600 /dev/stdin {path}) or set paths.token_file",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check(
            "token_file", False, f"the token file {path} is readable by others (mode {mode:04o}); run chmod 600 {path}"
        )
    if not os.access(path, os.R_OK):
        return Check("token_file", False, f"the token file {path} is not readable by this user; fix its owner")
    if path.stat().st_size == 0:
        return Check("token_file", False, f"the token file {path} is empty; write your Hugging Face token into it")
    return Check(
        "token_file",
        True,
        f"the token file {path} exists and only its owner can read it",
        {"path": str(path), "mode": f"{mode:04o}"},
    )


def check_disk(config: Config) -> Check:
    probe = nearest_existing(Path(config.paths.state_dir).expanduser())
    free_gb = free_bytes(probe) / 1e9
    need = config.preflight.min_free_disk_gb
    if free_gb < need:
        return Check(
            "disk",
            False,
            f"only {free_gb:.1f} GB free under {probe}, {need:g} GB needed; "
            "free some space or lower preflight.min_free_disk_gb",
        )
    return Check("disk", True, f"{free_gb:.1f} GB free under {probe}", {"free_gb": round(free_gb, 2)})


def pause_frees_memory(config: Config) -> bool:
    """Whether the run stops the co-tenant (pause-gemma with a control) before the engine starts."""
    return config.gemma_mode == "pause-gemma" and config.cotenant.control.kind != "none"


def deferred_by_pause(config: Config, name: str, message: str) -> Check | None:
    """pause-gemma frees the co-tenant's memory only after BASELINE, after these checks. What it
    holds cannot be measured well from here (on unified memory its GPU allocations are no
    cgroup's), so a shortfall is a warning: the budget is derived again at launch, after the pause,
    and the path fails there if it still cannot hold the weights (the co-tenant restarts in TEARDOWN)."""
    control = config.cotenant.control
    if not pause_frees_memory(config):
        return None
    return Check(
        name,
        True,
        f"{message}; pause-gemma stops the {control.kind} {control.name} before the engine starts: checked "
        "again at launch, after the pause",
        {"deferred_to": "launch"},
        warning=True,
    )


def check_memory(config: Config) -> Check:
    available = mem_available_gb()
    need = config.candidate.memory_required_gb
    if available < need:
        message = f"{available:.1f} GB of memory available, the candidate needs {need:g} GB"
        return deferred_by_pause(config, "memory", message) or Check(
            "memory", False, f"{message}; stop something or choose gemma_mode=pause-gemma"
        )
    return Check(
        "memory",
        True,
        f"{available:.1f} GB available for a candidate needing {need:g} GB",
        {"available_gb": round(available, 2), "source": "/proc/meminfo MemAvailable"},
    )


def check_token_mode(config: Config) -> Check:
    if config.candidate.token_mode == "env-file":
        return Check(
            "token_mode",
            True,
            "candidate.token_mode is env-file: the token will be in the candidate container's environment, "
            "where docker inspect shows it to anyone who can use Docker; use token_mode file unless the engine "
            "cannot read HF_TOKEN_PATH",
            warning=True,
        )
    return Check("token_mode", True, "the token reaches the candidate as a read-only file (HF_TOKEN_PATH)")


def check_memory_budget(config: Config) -> Check:
    """The candidate's budget must fit in what is free now (on unified memory the co-tenant's share
    is not free, and a stage config's hard-coded 0.8 of 128 GB is more than titan has) and hold the
    model's weights; the arithmetic is recorded either way."""
    from bench_py.engines.launch import LaunchError, memory_plan

    launch = config.candidate.launch
    if not any("{stage_" in flag for flags in launch.flags_by_version.values() for flag in flags):
        return Check(
            "memory_budget", True, "the launch flags take no memory budget: the engine's config decides", warning=True
        )
    try:
        plan = memory_plan(launch, mem_available_gb())
    except LaunchError as error:
        message = f"candidate memory budget: {error}"
        return deferred_by_pause(config, "memory_budget", message) or Check("memory_budget", False, message)
    return Check("memory_budget", True, f"candidate memory budget: {plan.arithmetic}", plan.as_dict())


def check_standin_engines(config: Config, labels: dict[str, str] | None = None) -> Check:
    """Which install paths would run a voxbench stand-in; without ``allow_standin_engines`` those
    are blocked, and a run with no other path fails here, before anything starts."""
    from bench_py.engines import standin

    if labels is None:
        labels = _image_labels(config)
    reasons = {name: standin.path_reason(name, config.candidate, labels) for name in config.candidate.install_paths}
    found = {name: why for name, why in reasons.items() if why}
    detail = {"allowed": config.allow_standin_engines, "paths": found}
    if not found:
        return Check("standin_engines", True, "no install path runs a voxbench stand-in", detail)
    if config.allow_standin_engines:
        names = ", ".join(found)
        return Check(
            "standin_engines",
            True,
            f"stand-ins allowed (allow_standin_engines): {names}; results name them",
            detail,
            warning=True,
        )
    if len(found) == len(reasons):
        sentences = " ".join(f"{name} blocked: {why}." for name, why in found.items())
        return Check(
            "standin_engines",
            False,
            f"every install path runs a voxbench stand-in: {sentences} {standin.BLOCKED}",
            detail,
        )
    blocked = "; ".join(f"{name}: {why}" for name, why in found.items())
    return Check(
        "standin_engines", True, f"these install paths will be blocked as stand-ins: {blocked}", detail, warning=True
    )


def _image_labels(config: Config) -> dict[str, str]:
    try:
        return dict(docker_client(config.preflight.docker_url).images.get(config.candidate.image).labels or {})
    except Exception:  # no daemon, no image: 2A's own checks say so when it is tried
        return {}


def blocked_paths(result: dict[str, Any]) -> list[dict[str, Any]]:
    """When PREFLIGHT refused every path as a stand-in: each path's record, as STARTING would write it."""
    from bench_py.engines.paths import PATH_KINDS, STREAMING

    for check in result["checks"]:
        if check["name"] == "standin_engines" and not check["ok"]:
            return [
                {
                    "install_path": name,
                    "kind": PATH_KINDS[name],
                    "streaming_capable": STREAMING[name],
                    "status": "blocked",
                    "reason": f"{why}; set allow_standin_engines: true to run stand-ins",
                }
                for name, why in check["detail"]["paths"].items()
            ]
    return []


def check_weights(config: Config) -> Check:
    """The weights are in the host's Hugging Face cache before the run (``voxbench prefetch``): a
    first start must not download 8 GB under the co-tenant gate."""
    cache = config.candidate.hf_cache_dir
    if not cache or config.candidate.install_paths == ["2D"]:
        return Check(
            "weights",
            True,
            "no Hugging Face cache is configured (candidate.hf_cache_dir): nothing to check",
            warning=True,
        )
    from bench_py.hosts.prefetch import cached_files, missing_files

    model = config.candidate.model
    files = cached_files(model, cache)
    fix = (
        "run `voxbench prefetch` on this host (or setup.yml with -e voxbench_prefetch_enabled=true) so the first "
        "start does not download them under the gate"
    )
    missing = missing_files(model, cache)
    if not files and not missing:
        return Check("weights", False, f"the weights of {model} are not in {cache}: {fix}")
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return Check("weights", False, f"the download of {model} into {cache} was cut short ({shown} missing): {fix}")
    detail = {"files": len(files), "cache": cache, "complete": "prefetch manifest" if missing == [] else "unverified"}
    return Check("weights", True, f"{model} is in {cache} ({len(files)} files)", detail)


def check_reference(config: Config, project_dir: Path) -> Check:
    directory = Path(config.reference.dir).expanduser()
    directory = directory if directory.is_absolute() else project_dir / directory
    try:
        entry = verify(directory, config.reference.name)
    except ReferenceError as error:
        return Check("reference", False, str(error))
    return Check("reference", True, f"reference '{entry['name']}' is allowed and its sha256 matches", entry)


def check_cotenant_control(config: Config) -> Check:
    control = config.cotenant.control
    if config.gemma_mode != "pause-gemma":
        return Check("cotenant_control", True, "gemma_mode=parallel: the co-tenant keeps serving, the gate watches it")
    if control.kind == "none" or not control.name:
        return Check(
            "cotenant_control",
            False,
            "gemma_mode=pause-gemma needs to know how to stop and restart the "
            "co-tenant: set cotenant.control.kind (container or systemd) and cotenant.control.name",
        )
    running = _cotenant_running(config)
    if running is False:
        return Check(
            "cotenant_control",
            False,
            f"pause-gemma would stop the {control.kind} {control.name}, which is not running on this host; "
            "name the co-tenant's own container or unit in cotenant.control.name",
        )
    return Check("cotenant_control", True, f"pause-gemma will stop and restart the {control.kind} {control.name}")


def _cotenant_running(config: Config) -> bool | None:
    """Whether the co-tenant's container or unit runs here; None when that cannot be asked."""
    control = config.cotenant.control
    if control.kind == "container":
        try:
            status: str = docker_client(config.preflight.docker_url).containers.get(control.name).status
            return status == "running"
        except Exception as error:
            return False if type(error).__name__ == "NotFound" else None
    result = subprocess.run(["systemctl", "is-active", str(control.name)], capture_output=True, text=True, check=False)
    return result.stdout.strip() == "active" if result.returncode in (0, 3) else None


def check_orphan_sweep(_config: Config) -> Check:
    """Informational: whether the daily sweep and boot recovery are installed (setup.yml)."""
    if not Path("/run/systemd/system").is_dir():
        return Check(
            "orphan_sweep",
            True,
            "this host does not run systemd as PID 1: the daily orphan sweep and boot "
            "recovery are not installed; run `voxbench cleanup` by hand after a crash",
            warning=True,
        )
    result = subprocess.run(
        ["systemctl", "is-enabled", "voxbench-cleanup.timer"], capture_output=True, text=True, check=False
    )
    if result.stdout.strip() != "enabled":
        return Check(
            "orphan_sweep",
            True,
            "the voxbench-cleanup.timer is not enabled on this host; run setup.yml "
            "so orphans of a crashed run are swept",
            warning=True,
        )
    return Check("orphan_sweep", True, "the daily orphan sweep (voxbench-cleanup.timer) is enabled")


CHECKS: tuple[Callable[[Config], Check], ...] = (
    check_docker,
    check_ports,
    check_token_file,
    check_token_mode,
    check_disk,
    check_memory,
    check_memory_budget,
    check_standin_engines,
    check_weights,
    check_cotenant_control,
    check_orphan_sweep,
)


def run_preflight(config: Config, project_dir: Path) -> dict[str, Any]:
    """Every check (all run, so the user sees every problem at once) and the sealed rule."""
    checks = [check(config) for check in CHECKS] + [check_reference(config, project_dir)]
    failed = [c for c in checks if not c.ok]
    return {
        "ok": not failed,
        "checks": [asdict(c) for c in checks],
        "failures": [c.message for c in failed],
        "rule": config.rule.seal(config.candidate.name, config.incumbent.name),
    }
