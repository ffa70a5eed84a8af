"""Atomic file writes: a reader sees the old file or the new one, never a mix.

The run's documents, the reference allowlist, the listening log's snapshots and every WAV voxbench
keeps go through these. A write that fails (a full disk) leaves the old file and no temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a mix."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_text(path: Path, text: str, mode: int = 0o600) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file so that readers see the old one or the new one, never a mix; a write that
    fails (a full disk) leaves the old file and no temporary one behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)  # a write through a handle names no file: name the one meant
        raise


#: The errors of a full disk: no space left, or the user's quota reached.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: What tools print for them (their strerror), to find a full disk in another program's messages.
DISK_FULL_WORDS = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS)


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def nearest_existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (a state directory not made yet)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    return shutil.disk_usage(nearest_existing(path)).free
