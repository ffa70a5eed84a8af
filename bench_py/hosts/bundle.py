"""The bundle setup.yml copies to a host: a wheelhouse for the host's Python and this project.

Built on the controller: ``bench_py`` as a wheel, every runtime dependency downloaded for the
host's Python version and architecture (``pip download --platform … --python-version …``),
and the playbooks, roles, modules and reference clips the host runs. Hosts install it with
``pip --no-index``: they need no package index, so air-gapped hosts work.

The bundle is one tar file with fixed timestamps and owners, cached by (source digest, Python,
platform): the same inputs give the same bytes, so copying it again changes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_py.version import source_digest, version_id

#: What of the project travels to hosts besides the wheel (relative to the project root).
PROJECT_PARTS = ("ansible.cfg", "playbooks", "roles", "library", "action_plugins", "voice-references")
_SKIP = ("__pycache__", ".pyc")
_SKIP_GLOBS = ("__pycache__", "*.pyc")


class BundleError(RuntimeError):
    """The bundle could not be built; the message carries pip's own words."""


@dataclass(frozen=True)
class HostPlatform:
    python: str  # "3.11"
    machine: str  # "x86_64" or "aarch64"
    glibc: str  # "2.36"

    @property
    def tag(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.machine}-glibc{self.glibc}"

    def pip_platforms(self) -> list[str]:
        """Every manylinux tag this host accepts (pip matches platform tags exactly)."""
        minor = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{n}_{self.machine}" for n in range(17, minor + 1)]
        return [*tags, f"manylinux2014_{self.machine}"]


def _filtered(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if any(part in info.name for part in _SKIP):
        return None
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info


def _deterministic_tar(target: Path, members: list[tuple[str, Path]], manifest: dict) -> None:
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in sorted(members):
            tar.add(path, arcname=arcname, filter=_filtered, recursive=False)
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    tar.add(child, arcname=f"{arcname}/{child.relative_to(path)}", filter=_filtered, recursive=False)
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        info = _filtered(tarfile.TarInfo("manifest.json"))
        assert info is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def build_bundle(
    project_dir: Path,
    cache_dir: Path,
    platform: HostPlatform,
    constraints: Path | None = None,
    python: str = sys.executable,
) -> dict:
    """Build (or reuse) the bundle for ``platform``; returns its path, manifest and whether it was built."""
    digest = bundle_digest(project_dir)
    bundle = cache_dir / f"voxbench-{digest}-{platform.tag}.tar"
    manifest = {
        "version_id": version_id(),
        "platform": platform.tag,
        "python": platform.python,
        "machine": platform.machine,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Hosts of one platform in one play ask at once: one builds, the others wait and reuse it.
    with open(cache_dir / f".{bundle.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if bundle.is_file():
            return {"path": str(bundle), "manifest": manifest, "built": False}
        _build(project_dir, bundle, platform, manifest, constraints, python)
    return {"path": str(bundle), "manifest": manifest, "built": True}


def _build(
    project_dir: Path, bundle: Path, platform: HostPlatform, manifest: dict, constraints: Path | None, python: str
) -> None:
    with tempfile.TemporaryDirectory(prefix="voxbench-bundle-") as workdir:
        wheels = Path(workdir) / "wheelhouse"
        wheels.mkdir()
        # Build from a clean copy: setuptools leaves build/ behind, and stale files there would ship.
        source = Path(workdir) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(project_dir / name, source / name)
        shutil.copytree(project_dir / "bench_py", source / "bench_py", ignore=shutil.ignore_patterns(*_SKIP_GLOBS))
        _pip(
            python,
            ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
            "building the voxbench wheel",
        )
        wheel = next(wheels.glob("voxbench-*.whl"))
        download = [
            "download",
            "--dest",
            str(wheels),
            "--only-binary=:all:",
            "--python-version",
            platform.python,
            "--implementation",
            "cp",
            "--abi",
            f"cp{platform.python.replace('.', '')}",
            "--abi",
            "abi3",
            "--abi",
            "none",
        ]
        for tag in platform.pip_platforms():
            download += ["--platform", tag]
        if constraints and constraints.is_file():
            download += ["-c", str(constraints)]
        _pip(python, [*download, str(wheel)], f"downloading dependencies for {platform.tag}")
        manifest["wheels"] = sorted(p.name for p in wheels.glob("*.whl"))
        members = [("wheelhouse", wheels)]
        members += [(f"project/{part}", project_dir / part) for part in PROJECT_PARTS if (project_dir / part).exists()]
        partial = bundle.with_suffix(".partial")
        _deterministic_tar(partial, members, manifest)
        partial.replace(bundle)


def bundle_digest(project_dir: Path) -> str:
    """bench_py's digest and every project file that travels: a new bundle when either changes."""
    digest = hashlib.sha256(source_digest().encode())
    for part in PROJECT_PARTS:
        root = project_dir / part
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for path in paths:
            if any(skip in str(path) for skip in _SKIP):
                continue
            digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _pip(python: str, args: list[str], what: str) -> None:
    result = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-12:])
        raise BundleError(f"{what} failed:\n{tail}")
