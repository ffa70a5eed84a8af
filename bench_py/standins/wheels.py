"""Wheels built locally, for tests and rehearsals of the paired-image build: a stand-in for
the vLLM in a ``vllm-openai`` base image and for a vLLM-Omni wheel of some tag.

A wheel is a zip of the package and its ``.dist-info`` (METADATA, WHEEL, RECORD); that is all
``importlib.metadata``, pip and a plain unzip need.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(dest: Path, distribution: str, version: str) -> Path:
    """A pure-Python wheel whose package reports ``__version__`` and says it is a stand-in."""
    module = distribution.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'"""voxbench stand-in for {distribution}."""\n__version__ = "{version}"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        "Summary: voxbench stand-in\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: voxbench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(path, text.encode()) for path, text in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel
