"""What exactly is installed: the release version plus a digest of the package's files.

Controller and host must run the same voxbench; the release number alone would miss a change
made without a version bump, so the digest of every source and data file is part of the id.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from bench_py import __version__

PACKAGE_ROOT = Path(__file__).resolve().parent
_SUFFIXES = (".py", ".yml", ".json", ".txt")


def source_digest(root: Path = PACKAGE_ROOT) -> str:
    """Hash of every source and data file of ``bench_py`` (paths and bytes), 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix not in _SUFFIXES or "__pycache__" in path.parts or not path.is_file():
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def version_id() -> str:
    """``<version>+<digest>``: equal on two machines only when they run the same files."""
    return f"{__version__}+{source_digest()}"
