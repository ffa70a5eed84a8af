"""Install path 2A: the candidate in a container, started and removed deterministically.

The token reaches the container as a read-only file mount and ``HF_TOKEN_PATH`` naming the
mount point: never on a command line, never in the environment (so ``docker inspect`` shows
a path, not a secret). Containers carry bench labels (run id, role, expiry) and are never
started with ``--rm``: teardown removes them and then verifies they are gone.
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import docker.utils

from bench_py.engines.ready import NotReady, wait_http_ready
from bench_py.files import atomic_write_text

LABEL_RUN = "io.voxbench.run-id"
LABEL_ROLE = "io.voxbench.role"
LABEL_EXPIRES = "io.voxbench.expires"
LABEL_BENCH = "io.voxbench.bench"
LABEL_HOST = "io.voxbench.host"


class StartError(RuntimeError):
    """The candidate did not come up; the message carries the evidence (log tail)."""


@dataclass(frozen=True)
class ContainerSpec:
    run_id: str
    image: str
    command: list[str]
    container_port: int
    host_port: int
    token_file: Path
    token_mount: str
    expires_in_s: float = 6 * 3600
    cpuset_cpus: str | None = None
    network_mode: str | None = None  # "container:<name>": share that namespace; no port is published
    gpus: bool = False  # the NVIDIA runtime is there: request every GPU through a device request
    files: tuple[tuple[str, bytes], ...] = ()  # (container path, content): copied in before start
    env_file: Path | None = None  # token_mode env-file: the seed's --env-file (docker inspect shows it)
    hf_cache: tuple[str, str] | None = None  # (host dir, container dir): downloaded weights outlive the run
    ipc_mode: str | None = None  # "host": vLLM's stages share memory through /dev/shm
    shm_size: str | None = None  # or a larger /dev/shm of the container's own

    @property
    def name(self) -> str:
        return f"voxbench-{self.run_id.lower()}-candidate"

    def labels(self) -> dict[str, str]:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.expires_in_s)
        return {
            LABEL_BENCH: "true",
            LABEL_RUN: self.run_id,
            LABEL_ROLE: "candidate",
            LABEL_HOST: socket.gethostname(),
            LABEL_EXPIRES: expires.isoformat(timespec="seconds"),
        }

    def create_kwargs(self) -> dict[str, Any]:
        """Arguments for ``containers.run``: what a reviewer checks for leaks."""
        return {
            "image": self.image,
            # The command line is exactly the configured one, whatever ENTRYPOINT the image has
            # (vLLM's images start `vllm serve`; a paired image inherits it).
            "entrypoint": self.command[:1],
            "command": self.command[1:],
            "name": self.name,
            "detach": True,
            "auto_remove": False,
            "labels": self.labels(),
            # Published on loopback only; or no port at all inside another container's namespace.
            **(
                {"network_mode": self.network_mode}
                if self.network_mode
                else {"ports": {f"{self.container_port}/tcp": ("127.0.0.1", self.host_port)}}
            ),
            **({"cpuset_cpus": self.cpuset_cpus} if self.cpuset_cpus else {}),
            **({"ipc_mode": self.ipc_mode} if self.ipc_mode else {}),
            **({"shm_size": self.shm_size} if self.shm_size else {}),
            **self._mounts(),
            **({"device_requests": [self.gpu_request()]} if self.gpus else {}),
        }

    def _token_kwargs(self) -> dict[str, Any]:
        if self.env_file is not None:
            # What `docker run --env-file` does: the file's variables become the container's
            # environment. Documented as leaking into `docker inspect`; never the default.
            return {"environment": docker.utils.parse_env_file(str(self.env_file))}
        return {
            "volumes": {str(self.token_file.expanduser().resolve()): {"bind": self.token_mount, "mode": "ro"}},
            "environment": {"HF_TOKEN_PATH": self.token_mount},
        }

    def _mounts(self) -> dict[str, Any]:
        """The token's route, and the Hugging Face cache when one is configured."""
        kwargs = self._token_kwargs()
        if self.hf_cache:
            host, inside = self.hf_cache
            cache = {str(Path(host).expanduser().resolve()): {"bind": inside, "mode": "rw"}}
            kwargs["volumes"] = {**kwargs.get("volumes", {}), **cache}
        return kwargs

    @staticmethod
    def gpu_request() -> docker.types.DeviceRequest:
        """``docker run --gpus all``, as the Docker SDK spells it."""
        return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])


def start(client: docker.DockerClient, spec: ContainerSpec) -> dict[str, Any]:
    """Start the candidate from a local image. Never pulls: a benchmark must not reach a registry by accident."""
    try:
        client.images.get(spec.image)
        kwargs = spec.create_kwargs()
        kwargs.pop("detach")
        container = client.containers.create(**kwargs)
        if spec.files:
            # Copied in rather than bind-mounted: the daemon may see another filesystem than ours.
            container.put_archive("/", _tar(spec.files))
        container.start()
    except docker.errors.ImageNotFound:
        raise StartError(
            f"the image {spec.image} is not on this host; build it (voxbench images build) or set candidate.image"
        ) from None
    except docker.errors.APIError as error:
        raise StartError(f"docker could not start {spec.name}: {error.explanation or error}") from None
    image = client.images.get(spec.image)
    return {
        "id": container.id,
        "name": spec.name,
        "image": spec.image,
        "image_id": image.id,
        # A paired image names what it was built from (voxbench images pair).
        "base_image": (image.labels or {}).get("io.voxbench.paired-from"),
        "command": spec.command,
        "labels": container.labels,
    }


def _tar(files: tuple[tuple[str, bytes], ...]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wait_ready(
    client: docker.DockerClient, spec: ContainerSpec, timeout_s: float, should_stop: Callable[[], None] = lambda: None
) -> float:
    """Poll ``/health`` until 200; returns seconds waited. Fails early if the container dies.

    ``should_stop`` is called between polls and raises to abandon the wait (an abort).
    """
    url = f"http://127.0.0.1:{spec.host_port}/health"

    def exited() -> str | None:
        container = client.containers.get(spec.name)
        if container.status in ("exited", "dead"):
            tail = container.logs(tail=20).decode(errors="replace")
            return f"the candidate container exited ({container.attrs['State'].get('ExitCode')}):\n{tail}"
        return None

    try:
        return wait_http_ready(url, timeout_s, exited, should_stop)
    except NotReady as error:
        if error.gone:
            raise StartError(str(error)) from None
        tail = client.containers.get(spec.name).logs(tail=20).decode(errors="replace")
        raise StartError(f"{error}; log tail:\n{tail}") from None


def save_logs(client: docker.DockerClient, run_id: str, dest: Path) -> dict[str, str]:
    """Every run container's log, kept in the run directory before the container goes."""
    dest.mkdir(parents=True, exist_ok=True)
    logs: dict[str, str] = {}
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}):
        try:
            text = container.logs(timestamps=False).decode(errors="replace")
        except docker.errors.APIError:
            continue
        atomic_write_text(dest / f"{container.name}.log", text, mode=0o644)
        logs[container.name] = text
    return logs


def remove_run_containers(client: docker.DockerClient, run_id: str, grace_s: float) -> dict[str, Any]:
    """``docker stop`` (grace) → ``docker rm -f`` → verify with inspect, for every container of the run."""
    removed, errors = [], []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}):
        try:
            if container.status == "running":
                container.stop(timeout=round(grace_s))
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            errors.append(f"{container.name}: {error.explanation or error}")
        try:
            client.containers.get(container.id)
            errors.append(f"{container.name} still exists after removal")
        except docker.errors.NotFound:
            removed.append(container.name)
    remaining = [c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})]
    return {"removed": removed, "remaining": remaining, "errors": errors, "verified": not remaining and not errors}
