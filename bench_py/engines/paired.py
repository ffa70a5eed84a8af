"""The fix that worked by hand on an aarch64 host whose engine images were amd64-only: a paired
image, built on the host, from a ``vllm-openai`` base of this platform plus vLLM-Omni installed
from the wheel of the matching tag. vLLM-Omni only runs on the vLLM minor it was built against,
so the pairing is refused when the two minors differ — checked before building, and again
inside the built image.

Nothing is pulled or downloaded: the base must be on the host and the wheel a local file. The
build uses the legacy builder (``FROM`` resolves locally) and installs the wheel with pip when
the base has it, else by unpacking it into site-packages (a wheel is a zip archive).
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors

VERSION_OF = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
WHEEL_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[0-9][^-]*)-[^-]+-[^-]+-[^-]+\.whl$")

DOCKERFILE = """FROM {base}
COPY {wheel} /tmp/{wheel}
RUN python3 -m pip install --no-index --no-deps /tmp/{wheel} 2>/dev/null \\
 || python3 -m zipfile -e /tmp/{wheel} "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \\
 rm -f /tmp/{wheel}
LABEL io.voxbench.paired-from="{base}" io.voxbench.paired-wheel="{wheel}"
"""


class PairingError(RuntimeError):
    """The image cannot be paired; the message says which versions disagree or what is missing."""


def minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise PairingError(f"{version!r} is not a version with a major and a minor number")
    return int(match.group(1)), int(match.group(2))


def wheel_version(wheel: Path) -> tuple[str, str]:
    match = WHEEL_NAME.match(wheel.name)
    if not match:
        raise PairingError(f"{wheel.name} is not a wheel file name (name-version-python-abi-platform.whl)")
    return match.group("name").replace("_", "-").lower(), match.group("version")


def installed_version(client: docker.DockerClient, image: str, distribution: str) -> str:
    """A distribution's version inside an image (run once, no network, removed)."""
    try:
        output = cast(  # not detached: docker-py returns the container's output as bytes
            bytes,
            client.containers.run(
                image, ["python3", "-c", VERSION_OF, distribution], remove=True, network_disabled=True
            ),
        )
    except docker.errors.ContainerError as error:
        raise PairingError(f"{image} has no {distribution}: {error.stderr.decode(errors='replace')[-200:]}") from None
    except docker.errors.ImageNotFound:
        raise PairingError(f"the base image {image} is not on this host") from None
    return output.decode().strip().splitlines()[-1]


def check_pair(vllm_version: str, omni_version: str) -> None:
    if minor(vllm_version) != minor(omni_version):
        raise PairingError(
            f"vLLM {vllm_version} and vLLM-Omni {omni_version} differ in their minor version; vLLM-Omni runs on "
            f"the vLLM it was built against: use a base of vLLM {'.'.join(map(str, minor(omni_version)))}.x"
        )


def build_with_wheel(client: docker.DockerClient, base: str, wheel: Path, tag: str) -> str:
    """``FROM base`` + the wheel installed; returns the image id."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = DOCKERFILE.format(base=base, wheel=wheel.name).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(str(wheel), arcname=wheel.name)
    context.seek(0)
    try:
        image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, pull=False)
    except docker.errors.BuildError as error:
        log = "".join(str(step.get("stream", "")) for step in error.build_log)[-800:]
        raise PairingError(f"building {tag} failed: {error.msg}\n{log}") from None
    return str(image.id)


def pair(client: docker.DockerClient, base: str, omni_wheel: Path, tag: str) -> dict[str, Any]:
    """Check the minors, build, then read both versions back from the built image."""
    name, omni_version = wheel_version(omni_wheel)
    if name != "vllm-omni":
        raise PairingError(f"{omni_wheel.name} is a wheel of {name}, not of vllm-omni")
    vllm_version = installed_version(client, base, "vllm")
    check_pair(vllm_version, omni_version)
    image_id = build_with_wheel(client, base, omni_wheel, tag)
    built = {"vllm": installed_version(client, tag, "vllm"), "vllm-omni": installed_version(client, tag, "vllm-omni")}
    check_pair(built["vllm"], built["vllm-omni"])
    arch = client.images.get(tag).attrs.get("Architecture")
    return {"tag": tag, "image_id": image_id, "base": base, "versions": built, "architecture": arch}
