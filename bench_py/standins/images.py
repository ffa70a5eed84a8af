"""Docker images for the stand-ins, built from Debian packages with no registry.

Three steps, each cached by a hash of its inputs so a rebuild happens only when they change:

1. base: ``debootstrap --variant=minbase`` a Debian root filesystem holding Python, aiohttp,
   numpy, PyYAML and the speech engines, then ``docker import`` it (no image is ever pulled);
2. app: ``docker build`` on top of the local base (the legacy builder resolves ``FROM``
   locally) adding ``bench_py``, pydantic 2 (Debian 12 has 1.10; the upstream request model
   needs 2: its wheels are unpacked beside ``bench_py``) and the command of each stand-in;
3. candidate: per pinned vLLM-Omni release, its wheel unpacked (metadata and source, never
   run) and a ``vllm-omni`` command that answers to that release's launch command
   (:mod:`bench_py.standins.vllm_omni_cli`): ``voxbench/standin-vllm-omni:<release>``.

Everything but the Debian packages comes from the package index once and is cached; this is
what makes voxbench usable on air-gapped hosts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
import docker.errors

from bench_py.standins.engines import CALIBRATION_DIR_ENV
from bench_py.version import PACKAGE_ROOT, source_digest

#: Bump when the way images are assembled changes (forces a rebuild everywhere).
RECIPE_VERSION = 1
BASE_REPOSITORY = "voxbench/standin-base"
LABEL_INPUTS = "io.voxbench.inputs"
LABEL_ROLE = "io.voxbench.standin"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BaseRecipe:
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    repository: str = BASE_REPOSITORY
    packages: tuple[str, ...] = (
        "python3",
        "python3-aiohttp",
        "python3-numpy",
        "python3-yaml",
        "espeak-ng",
        "flite",
        "festival",
        "festvox-us-slt-hts",
    )

    def digest(self) -> str:
        payload = json.dumps({"recipe": asdict(self), "version": RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.digest()}"


@dataclass(frozen=True)
class StandinImage:
    """One stand-in program packaged as an image."""

    role: str  # "tts" or "cotenant"
    module: str
    port: int
    args: tuple[str, ...] = field(default=())

    @property
    def repository(self) -> str:
        return f"voxbench/standin-{self.role}"


STANDINS = (
    # Run as is, the TTS image is panda's Chatterbox; the candidate images below play vLLM-Omni.
    StandinImage("tts", "bench_py.standins.tts_server", 8091, ("--api", "chatterbox", "--engine", "flite")),
    StandinImage("cotenant", "bench_py.standins.cotenant_server", 8000),
)
CANDIDATE_REPOSITORY = "voxbench/standin-vllm-omni"
#: The model the candidate images serve by default (their CMD): the production launch command.
CANDIDATE_MODEL = "mistralai/Voxtral-4B-TTS-2603"
#: What the stand-in code needs beyond Debian's packages (pydantic 2 for the upstream request model;
#: prometheus-client, with which the co-tenant stand-in serves /metrics as vLLM does).
IMAGE_WHEELS = (
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "annotated-types",
    "typing-inspection",
    "prometheus-client",
)


class ImageBuildError(RuntimeError):
    """Building a stand-in image failed; the message says which step and why."""


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_base(client: docker.DockerClient, recipe: BaseRecipe, progress: Progress = print) -> str:
    """Debootstrap and import the base image unless one with the same inputs exists."""
    if _image_exists(client, recipe.tag):
        progress(f"base image {recipe.tag} is up to date")
        return recipe.tag
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed; install it (apt-get install debootstrap)")
    progress(f"building base image {recipe.tag} with debootstrap ({recipe.suite}, {len(recipe.packages)} packages)")
    with tempfile.TemporaryDirectory(prefix="voxbench-rootfs-") as workdir:
        rootfs = os.path.join(workdir, "rootfs")
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(recipe.packages)}",
            recipe.suite,
            rootfs,
            recipe.mirror,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ImageBuildError(f"debootstrap failed (exit {result.returncode}):\n{tail}")
        # Package caches and lists only make the image larger; nothing in it runs apt.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(os.path.join(rootfs, leftover), ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        labels = [f"LABEL {LABEL_INPUTS}={recipe.digest()}", "ENV LANG=C.UTF-8"]
        change_args = [arg for change in labels for arg in ("--change", change)]
        imported = subprocess.run(
            ["docker", "import", *change_args, "-", recipe.tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageBuildError(f"docker import failed: {imported.stderr.strip()}")
    progress(f"base image {recipe.tag} imported")
    return recipe.tag


def build_layer(
    client: docker.DockerClient, tag: str, dockerfile: str, files: dict[str, Path], progress: Progress = print
) -> str:
    """``docker build`` of a layer over a local base image (nothing is pulled), unless ``tag`` exists."""
    if _image_exists(client, tag):
        progress(f"{tag} is up to date")
        return tag
    progress(f"building {tag}")
    with tempfile.TemporaryDirectory(prefix="voxbench-image-") as context:
        for name, source in files.items():
            target = Path(context, name)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)  # keeps the mode: a script stays executable
        Path(context, "Dockerfile").write_text(dockerfile)
        try:
            client.images.build(path=context, tag=tag, rm=True, pull=False, forcerm=True)
        except (docker.errors.BuildError, docker.errors.APIError) as error:
            raise ImageBuildError(f"docker build of {tag} failed: {error}") from None
    return tag


def image_wheels(progress: Progress = print) -> Path:
    """pydantic 2 and what it needs, as wheels for the image's Python (Debian 12: CPython 3.11) on
    this machine's architecture, at the versions this project runs with; downloaded once."""
    from importlib import metadata

    from bench_py.standins.upstream import cache_dir

    machine = os.uname().machine
    pins = [f"{name}=={metadata.version(name)}" for name in IMAGE_WHEELS]
    folder = cache_dir().parent / "image-wheels" / hashlib.sha256(f"{machine}:{pins}".encode()).hexdigest()[:16]
    if folder.is_dir() and len(list(folder.glob("*.whl"))) == len(pins):
        return folder
    progress(f"downloading {', '.join(pins)} for the stand-in images (CPython 3.11, {machine})")
    platforms = [f"manylinux{tag}_{machine}" for tag in ("2014", "_2_17", "_2_28", "_2_34")]
    with tempfile.TemporaryDirectory(
        prefix="voxbench-wheels-", dir=cache_dir().parent if cache_dir().parent.is_dir() else None
    ) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--dest", scratch]
        command += [arg for platform_tag in platforms for arg in ("--platform", platform_tag)]
        result = subprocess.run([*command, *pins], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ImageBuildError(f"could not download {pins} for the images: {result.stderr.strip()[-500:]}")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(scratch, folder)
    return folder


def _unpacked(wheels: list[Path], destination: Path) -> Path:
    import zipfile

    destination.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(destination)
    return destination


#: Where the TTS image keeps the calibrations it measured when built (engines.CALIBRATION_DIR_ENV).
IMAGE_CALIBRATIONS = "/opt/voxbench/calibration"


def _dockerfile(base: str, standin: StandinImage, inputs: str) -> str:
    command = json.dumps(
        ["python3", "-m", standin.module, "--host", "0.0.0.0", "--port", str(standin.port), *standin.args]
    )
    # The engines calibrate once, here: each container then starts without measuring them again.
    calibrate = [
        f"ENV {CALIBRATION_DIR_ENV}={IMAGE_CALIBRATIONS}",
        'RUN ["python3", "-m", "bench_py.standins.engines"]',
    ]
    return "\n".join(
        [
            f"FROM {base}",
            "COPY bench_py /opt/voxbench/bench_py",
            "COPY site /opt/voxbench/site",
            "ENV PYTHONPATH=/opt/voxbench:/opt/voxbench/site PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
            *(calibrate if standin.role == "tts" else []),
            f'LABEL {LABEL_ROLE}="{standin.role}" {LABEL_INPUTS}="{inputs}"',
            f"EXPOSE {standin.port}",
            f"CMD {command}",
            "",
        ]
    )


#: The candidate image's ``vllm-omni`` command.
_VLLM_OMNI_SCRIPT = '#!/bin/sh\nexec python3 -m bench_py.standins.vllm_omni_cli "$@"\n'


def _candidate_dockerfile(base: str, version: str, inputs: str) -> str:
    command = json.dumps(["vllm-omni", "serve", CANDIDATE_MODEL, "--omni", "--host", "0.0.0.0", "--port", "8091"])
    return "\n".join(
        [
            f"FROM {base}",
            "COPY release /opt/vllm-omni/site",
            "COPY vllm-omni /usr/local/bin/vllm-omni",
            "ENV PYTHONPATH=/opt/voxbench:/opt/voxbench/site:/opt/vllm-omni/site",
            f'LABEL {LABEL_ROLE}="candidate" io.voxbench.vllm-omni="{version}" {LABEL_INPUTS}="{inputs}"',
            "EXPOSE 8091",
            f"CMD {command}",
            "",
        ]
    )


def build_standins(
    client: docker.DockerClient | None = None,
    recipe: BaseRecipe | None = None,
    force: bool = False,
    progress: Progress = print,
) -> dict[str, str]:
    """Build (or find cached) images for every stand-in; returns ``{role: tag}`` with the roles
    ``tts``, ``cotenant`` and ``vllm-omni-<release>`` for each pinned vLLM-Omni release.

    Each image is also tagged ``:latest`` (the candidates ``:<release>``) so playbooks and users
    can name it without a hash.
    """
    from bench_py.standins import upstream

    client = client or docker.from_env()
    recipe = recipe or BaseRecipe()
    stable = [f"{s.repository}:latest" for s in STANDINS] + [f"{CANDIDATE_REPOSITORY}:{v}" for v in upstream.RELEASES]
    if force:
        for tag in [recipe.tag, *stable]:
            if _image_exists(client, tag):
                client.images.remove(tag, force=True)
    base = build_base(client, recipe, progress)
    wheels = sorted(image_wheels(progress).glob("*.whl"))
    releases = {v: upstream.ensure_wheel(v) for v in upstream.RELEASES}
    pinned = [w.name for w in wheels] + [upstream.RELEASES[v].sha256 for v in releases]
    inputs = hashlib.sha256(f"{recipe.digest()}:{source_digest()}:{RECIPE_VERSION}:{pinned}".encode()).hexdigest()[:16]
    tags: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="voxbench-site-") as scratch:
        site = _unpacked(wheels, Path(scratch, "site"))
        for standin in STANDINS:
            tag = build_layer(
                client,
                f"{standin.repository}:{inputs}",
                _dockerfile(base, standin, inputs),
                {"bench_py": PACKAGE_ROOT, "site": site},
                progress,
            )
            client.images.get(tag).tag(standin.repository, "latest")
            tags[standin.role] = tag
        script = Path(scratch, "vllm-omni")
        script.write_text(_VLLM_OMNI_SCRIPT)
        script.chmod(0o755)
        for version, wheel in releases.items():
            tag = build_layer(
                client,
                f"{CANDIDATE_REPOSITORY}:{version}-{inputs}",
                _candidate_dockerfile(tags["tts"], version, inputs),
                {"release": _unpacked([wheel], Path(scratch, f"release-{version}")), "vllm-omni": script},
                progress,
            )
            client.images.get(tag).tag(CANDIDATE_REPOSITORY, version)
            tags[f"vllm-omni-{version}"] = tag
            # 2B's side of the same release: a venv-shaped directory on this host.
            upstream.standin_venv(version)
    return tags
