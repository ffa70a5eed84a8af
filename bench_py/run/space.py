"""The run directory's disk: a reserve for the closing documents, and a full disk as an abort.

A host's disk can fill up mid-run (a log growing beside us, a model cache). The run's results
are worth more than its next WAV, so the run keeps a reserve: a file of really allocated blocks
made at PREFLIGHT. The first "no space left" anywhere in the phases releases it and aborts the
run, and the space it gives back is what the abort flag, the partial bench file, teardown's
record, the final state, ``measurements.json`` and ``verdict.json`` are written into. Every
write is atomic, so what the full disk interrupted is absent, never half there.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from bench_py.files import free_bytes
from bench_py.files import is_disk_full as is_disk_full  # the phases ask space whether an error is one

RESERVE = ".reserve"


def make_reserve(run_dir: Path, size_bytes: int) -> int:
    """Allocate the reserve (blocks, not a sparse file); returns its size. A disk that cannot
    hold it raises the ``OSError`` (ENOSPC) and leaves no partial reserve behind."""
    path = Path(run_dir) / RESERVE
    if size_bytes <= 0:
        return 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size_bytes)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            block = b"\0" * (1 << 20)  # a filesystem without fallocate: write the blocks
            for offset in range(0, size_bytes, len(block)):
                os.write(fd, block[: min(len(block), size_bytes - offset)])
        os.fsync(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return size_bytes


def release_reserve(run_dir: Path) -> int:
    """Give the reserve's space back; returns the bytes freed (0 when there was none)."""
    path = Path(run_dir) / RESERVE
    with contextlib.suppress(FileNotFoundError):
        size = path.stat().st_size
        path.unlink()
        return size
    return 0


def disk_full_reason(error: OSError, run_dir: Path) -> str:
    """One sentence for the run's reason: what could not be written, and what to do."""
    where = f" writing {error.filename}" if error.filename else ""
    free = free_bytes(run_dir)
    return (
        f"the disk is full ({error.strerror}{where}; {free} bytes free under {run_dir}): "
        "the run was aborted and kept what it had written; free some space and run again"
    )
