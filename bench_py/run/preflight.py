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
from bench_py.run.space import free_bytes, nearest_existing
from bench_py.voice.references import ReferenceError, verify


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    detail: dict[str, Any] | None = None
    warning: bool = False  # passed, but the user should know (recorded in the run)


def docker_client(url: str | None):
    import docker

    return docker.DockerClient(base_url=url) if url else docker.from_env()


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


def mem_available_gb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("MemAvailable missing from /proc/meminfo")


def check_memory(config: Config) -> Check:
    available = mem_available_gb()
    need = config.candidate.memory_required_gb
    if available < need:
        return Check(
            "memory",
            False,
            f"{available:.1f} GB of memory available, the candidate needs "
            f"{need:g} GB; stop something or choose gemma_mode=pause-gemma",
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
    """The candidate's budget must fit in what is free now: on unified memory the co-tenant's
    share is not free, and a stage config's hard-coded 0.8 of 128 GB is more than Titan has."""
    from bench_py.engines.launch import LaunchError, total_memory_gb, utilization_for

    launch = config.candidate.launch
    if launch.memory_budget_gb is None:
        return Check("memory_budget", True, "no memory budget set: the engine's stage config decides", warning=True)
    available = mem_available_gb()
    budget = launch.memory_budget_gb
    if budget > available:
        return Check(
            "memory_budget",
            False,
            f"candidate.launch.memory_budget_gb is {budget:g} GB, more than the {available:.1f} GB free on this host; "
            "lower it, or choose gemma_mode=pause-gemma",
        )
    try:
        total, source = total_memory_gb(launch.total_memory_gb)
        utilization = utilization_for(budget, total)
    except LaunchError as error:
        return Check("memory_budget", False, f"candidate.launch.memory_budget_gb: {error}")
    return Check(
        "memory_budget",
        True,
        f"a budget of {budget:g} GB fits in the {available:.1f} GB free: gpu_memory_utilization {utilization:g} "
        f"of {total:.1f} GB",
        {
            "budget_gb": budget,
            "available_gb": round(available, 2),
            "total_gb": round(total, 2),
            "total_source": source,
            "gpu_memory_utilization": utilization,
        },
    )


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
    return Check("cotenant_control", True, f"pause-gemma will stop and restart the {control.kind} {control.name}")


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
