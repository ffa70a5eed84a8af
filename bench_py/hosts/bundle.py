"""The bundle setup.yml copies to a host: a wheelhouse for the host's Python and this project.

Built on the controller: ``bench_py`` as a wheel, every dependency of what the host-side run
imports (``voxbench[scorer]``: the preset sweep scores voices with resemblyzer, so torch comes
too) downloaded for the host's Python version and architecture (``pip download --platform …
--python-version … --only-binary=:all:``), and the playbooks, roles, modules and reference clips
the host runs. Hosts install it with ``pip --no-index``: they need no package index, so
air-gapped hosts work.

Two of resemblyzer's requirements have no wheel on PyPI: ``webrtcvad`` (``webrtcvad-wheels``
ships the same module as wheels) and the ``typing`` backport (the standard library's on any
Python 3). For each, the bundle carries a metadata-only wheel of that name that says so and
requires the drop-in, if any: the requirement is met by what really provides the module.

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
from typing import Any

from bench_py.version import source_digest, version_id

#: What of the project travels to hosts besides the wheel (relative to the project root).
PROJECT_PARTS = ("ansible.cfg", "roles", "library", "action_plugins", "voice-references")
#: The extra of voxbench the host-side run needs (docs/setup.md).
HOST_EXTRA = "scorer"
#: Requirements with no wheel, and what provides their module instead (None: the standard library).
DROP_INS: dict[str, str | None] = {"webrtcvad": "webrtcvad-wheels", "typing": None}
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


def _deterministic_tar(target: Path, members: list[tuple[str, Path]], manifest: dict[str, Any]) -> None:
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
) -> dict[str, Any]:
    """Build (or reuse) the bundle for ``platform``; returns its path, manifest and whether it was built."""
    if not (Path(project_dir) / "pyproject.toml").is_file():
        raise BundleError(f"{project_dir} is not the voxbench project (no pyproject.toml there)")
    digest = bundle_digest(project_dir)
    bundle = cache_dir / f"voxbench-{digest}-{platform.tag}.tar"
    manifest: dict[str, Any] = {  # _build adds the wheels, the extra and the drop-ins
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
    project_dir: Path,
    bundle: Path,
    platform: HostPlatform,
    manifest: dict[str, Any],
    constraints: Path | None,
    python: str,
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
        pins = _pins(constraints)
        for name, provider in DROP_INS.items():
            _drop_in_wheel(wheels, name, pins.get(name, "0"), provider, pins.get(provider or ""))
        download = ["download", "--dest", str(wheels), *_resolution_args(platform, constraints, wheels)]
        _pip(python, [*download, f"{wheel}[{HOST_EXTRA}]"], f"downloading dependencies for {platform.tag}")
        manifest["wheels"] = sorted(p.name for p in wheels.glob("*.whl"))
        manifest["extra"] = HOST_EXTRA
        manifest["drop_ins"] = {name: provider or "the standard library" for name, provider in DROP_INS.items()}
        members = [("wheelhouse", wheels)]
        members += [(f"project/{part}", project_dir / part) for part in PROJECT_PARTS if (project_dir / part).exists()]
        partial = bundle.with_suffix(".partial")
        _deterministic_tar(partial, members, manifest)
        partial.replace(bundle)


def _resolution_args(platform: HostPlatform, constraints: Path | None, wheels: Path) -> list[str]:
    """pip's arguments that resolve for the host's platform, wheels only, with the drop-ins in ``wheels``."""
    args = ["--find-links", str(wheels), "--only-binary=:all:", "--python-version", platform.python]
    args += [
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
        args += ["--platform", tag]
    if constraints and constraints.is_file():
        args += ["-c", str(constraints)]
    return args


def resolve(
    project_dir: Path, platform: HostPlatform, constraints: Path | None, python: str = sys.executable
) -> list[str]:
    """What the bundle for ``platform`` would hold, resolved without building it (``pip install
    --dry-run``: metadata only, where the index serves it): a platform gap shows here first."""
    with tempfile.TemporaryDirectory(prefix="voxbench-resolve-") as workdir:
        wheels, source = Path(workdir) / "wheelhouse", Path(workdir) / "source"
        wheels.mkdir()
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
        pins = _pins(constraints)
        for name, provider in DROP_INS.items():
            _drop_in_wheel(wheels, name, pins.get(name, "0"), provider, pins.get(provider or ""))
        report = Path(workdir) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--target", str(Path(workdir) / "target")]
        args += ["--report", str(report), *_resolution_args(platform, constraints, wheels), f"{wheel}[{HOST_EXTRA}]"]
        _pip(python, args, f"resolving the bundle for {platform.tag}")
        installed = json.loads(report.read_text())["install"]
        return sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installed)


def _pins(constraints: Path | None) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by normalized name."""
    pins: dict[str, str] = {}
    if constraints and constraints.is_file():
        for line in constraints.read_text().splitlines():
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep:
                pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _drop_in_wheel(folder: Path, name: str, version: str, provider: str | None, provider_version: str | None) -> Path:
    """A wheel with metadata only: ``name`` is satisfied, and requires ``provider`` (which ships the module)."""
    from base64 import urlsafe_b64encode
    from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    what = f"provided by {provider}" if provider else "provided by the standard library on Python 3"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: voxbench drop-in: {name} is {what}\n"
    if provider:
        metadata += f"Requires-Dist: {provider}{'==' + provider_version if provider_version else ''}\n"
    files = {
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: voxbench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def record(path: str, data: bytes) -> str:
        digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"{path},sha256={digest},{len(data)}"

    lines = [record(path, text.encode()) for path, text in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = "\n".join(lines) + "\n"
    target = folder / f"{module}-{version}-py3-none-any.whl"
    with ZipFile(target, "w", ZIP_DEFLATED) as archive:
        for path, text in sorted(files.items()):
            info = ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))  # the same bytes every time
            archive.writestr(info, text)
    return target


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
