"""A container registry on loopback (Debian's ``docker-registry``) holding an image built for
another architecture: what vLLM-Omni's amd64-only images are to an aarch64 DGX Spark.

The image is written through the registry's HTTP API (blobs, an image manifest, a manifest
list naming its platform), so the platform check reads a real manifest the way it would
from any registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import httpx

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

CONFIG = """version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
log:
  level: warn
"""


def foreign_architecture() -> str:
    """An architecture this host is not: arm64 on x86-64 hosts, amd64 elsewhere."""
    return "arm64" if platform.machine().lower() in ("x86_64", "amd64") else "amd64"


def start(root: Path, port: int, timeout_s: float = 20.0) -> subprocess.Popen[bytes]:
    """Run ``docker-registry serve`` on 127.0.0.1:<port> with its storage under ``root``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(CONFIG.format(root=root / "data", port=port))
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"docker-registry did not answer on 127.0.0.1:{port} within {timeout_s:g} s")


def _upload(client: httpx.Client, name: str, blob: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    started = client.post(f"/v2/{name}/blobs/uploads/")
    started.raise_for_status()
    # The upload URL carries the registry's own state in its query: add the digest to it.
    location = httpx.URL(started.headers["location"]).copy_merge_params({"digest": digest})
    client.put(location, content=blob).raise_for_status()
    return digest


def push_foreign_image(port: int, name: str, tag: str = "latest", architecture: str | None = None) -> str:
    """Push a one-file image for ``architecture`` (default: not this host's); returns its reference."""
    arch = architecture or foreign_architecture()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"built for linux/{arch}\n".encode()
        info = tarfile.TarInfo("PLATFORM")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/false"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
        }
    ).encode()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        layer_digest, config_digest = _upload(client, name, layer), _upload(client, name, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": layer_digest,
                    }
                ],
            }
        ).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        client.put(
            f"/v2/{name}/manifests/{manifest_digest}", content=manifest, headers={"Content-Type": MANIFEST}
        ).raise_for_status()
        listing = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_LIST,
                "manifests": [
                    {
                        "mediaType": MANIFEST,
                        "size": len(manifest),
                        "digest": manifest_digest,
                        "platform": {"architecture": arch, "os": "linux"},
                    }
                ],
            }
        ).encode()
        client.put(
            f"/v2/{name}/manifests/{tag}", content=listing, headers={"Content-Type": MANIFEST_LIST}
        ).raise_for_status()
    return f"127.0.0.1:{port}/{name}:{tag}"
