"""What a first-time user lacks to run the embedded default, created and announced.

``voxbench demo prepare`` builds the stand-in images, writes a demo Hugging Face token file
(mode 0600) and the incumbent's internal token, synthesizes and confirms the default reference
clip, and starts this machine's "production": the co-tenant LLM stand-in and the incumbent
TTS stand-in, as long-running containers that voxbench's teardown never touches.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from bench_py.config.model import Config
from bench_py.standins.images import build_standins
from bench_py.standins.reference import synthesize_reference
from bench_py.voice.references import ReferenceError, add_confirmed, verify

LABEL_PRODUCTION = "io.voxbench.production-standin"
TOKEN_MOUNT = "/run/secrets/incumbent_token"
#: The co-tenant has a CPU to itself; the engines and the client share the other (inventory/local).
COTENANT_CPUS, ENGINE_CPUS = "0", "1"

Say = Callable[[str], None]


@dataclass(frozen=True)
class ProductionStandin:
    name: str
    image_role: str
    container_port: int
    host_port: int
    command: list[str]
    token_file: Path | None = None
    cpuset_cpus: str | None = None


def _port(url: str) -> int:
    from urllib.parse import urlparse

    port = urlparse(url).port
    if port is None:
        raise ValueError(f"the demo needs an explicit port in {url}")
    return port


def cotenant_command(port: int, model: str | None = None, host: str = "0.0.0.0") -> list[str]:
    """The co-tenant stand-in's command line inside its image."""
    command = ["python3", "-m", "bench_py.standins.cotenant_server", "--host", host, "--port", str(port)]
    return command + (["--model", model] if model else [])


def incumbent_command(port: int, token_file: str | None = None, host: str = "0.0.0.0") -> list[str]:
    """The incumbent stand-in (flite behind the Chatterbox-style API) inside its image."""
    command = [
        "python3",
        "-m",
        "bench_py.standins.tts_server",
        "--host",
        host,
        "--port",
        str(port),
        "--engine",
        "flite",
        "--api",
        "chatterbox",
    ]
    return command + (["--token-file", token_file] if token_file else [])


def production_standins(config: Config) -> list[ProductionStandin]:
    cotenant_port, incumbent_port = _port(config.cotenant.url), _port(config.incumbent.url)
    incumbent_token = Path(config.incumbent.token_file).expanduser() if config.incumbent.token_file else None
    return [
        ProductionStandin(
            "voxbench-production-cotenant",
            "cotenant",
            8000,
            cotenant_port,
            cotenant_command(8000, config.cotenant.model),
            cpuset_cpus=COTENANT_CPUS,
        ),
        ProductionStandin(
            "voxbench-production-incumbent",
            "tts",
            8092,
            incumbent_port,
            incumbent_command(8092, TOKEN_MOUNT if incumbent_token else None),
            incumbent_token,
            ENGINE_CPUS,
        ),
    ]


def ensure_secret_file(path: Path, what: str, say: Say) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"demo-{secrets.token_hex(16)}\n")
    say(f"created a demo {what} at {path} (mode 0600); put a real one there for a real run")


def ensure_reference(config: Config, project_dir: Path, say: Say) -> None:
    directory = Path(config.reference.dir).expanduser()
    directory = directory if directory.is_absolute() else project_dir / directory
    try:
        verify(directory, config.reference.name)
        return
    except ReferenceError:
        pass
    clip = directory / f"{config.reference.name}.wav"
    directory.mkdir(parents=True, exist_ok=True)
    pcm = synthesize_reference(str(clip))
    add_confirmed(directory, config.reference.name, clip, "voxbench demo: festival cmu_us_slt_arctic_hts")
    say(
        f"created and confirmed the demo reference clip {clip} ({pcm.duration_s:.1f} s, a voice neither "
        "stand-in engine uses)"
    )


def ensure_production(
    client: docker.DockerClient, images: dict[str, str], standin: ProductionStandin, say: Say
) -> None:
    try:
        existing = client.containers.get(standin.name)
        if existing.status == "running":
            return
        existing.remove(force=True)
    except docker.errors.NotFound:
        pass
    volumes = {}
    if standin.token_file:
        volumes[str(standin.token_file)] = {"bind": TOKEN_MOUNT, "mode": "ro"}
    client.containers.run(
        images[standin.image_role],
        standin.command,
        name=standin.name,
        detach=True,
        labels={LABEL_PRODUCTION: "true"},
        ports={f"{standin.container_port}/tcp": ("127.0.0.1", standin.host_port)},
        volumes=volumes,
        restart_policy={"Name": "unless-stopped"},
        **({"cpuset_cpus": standin.cpuset_cpus} if standin.cpuset_cpus else {}),
    )
    say(f"started {standin.name} on 127.0.0.1:{standin.host_port} as this machine's production stand-in")


def prepare(config: Config, project_dir: Path, say: Say = print) -> dict[str, str]:
    client = docker.from_env()
    images = build_standins(client, progress=say)
    ensure_secret_file(Path(config.paths.token_file).expanduser(), "Hugging Face token file", say)
    if config.incumbent.token_file:
        ensure_secret_file(Path(config.incumbent.token_file).expanduser(), "incumbent token file", say)
    ensure_reference(config, project_dir, say)
    for standin in production_standins(config):
        ensure_production(client, images, standin, say)
    return images
