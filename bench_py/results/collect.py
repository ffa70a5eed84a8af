"""A run brought to the controller whole, or not at all.

The collector fetches a finished run from the host (one pack unpacked here, or file by file when
the host could not hold a pack) into a hidden staging directory beside the runs,
``<runs>/.<run id>.partial``. Only a whole copy, every file at its size, is moved to
``<runs>/<run id>``, where the report, ``voxbench score``, ``voxbench publish`` and the collector's
own later steps look. A full controller disk (or a cut connection) therefore never leaves a
``<runs>/<run id>`` that could pass for the run: the staging directory is removed, the host keeps
its copy, the run is not marked collected there, and the next ``bench.yml`` fetches it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from bench_py.files import DISK_FULL_ERRNOS, DISK_FULL_WORDS, free_bytes

#: Room kept free beyond the run itself: directory blocks, the report and listening files the
#: controller writes next, and whatever else shares the disk for a moment.
MARGIN_BYTES = 4 << 20


class CollectError(RuntimeError):
    """The run could not be brought to the controller whole; nothing partial was kept."""


class ControllerDiskFull(CollectError):
    """The controller's disk cannot hold the run (checked before writing, or hit while writing)."""

    def __init__(self, dest: Path, run_id: str, need: int, free: int, detail: str = "") -> None:
        """``need``: the run's bytes with :data:`MARGIN_BYTES`; ``free``: what the disk has now."""
        self.dest, self.need, self.free = dest, need, free
        said = f" ({detail})" if detail else ""
        super().__init__(
            f"the controller's disk under {dest} is full{said}: run {run_id} needs {_mib(need)} there and "
            f"{_mib(free)} is free. Nothing partial was kept and the host keeps the run (it is not marked "
            f"collected): free at least {_mib(max(need - free, 1 << 20))} under {dest} (or set "
            f"voxbench_collector_dest to a disk with room) and run bench.yml again; it collects this run"
        )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _check_run_id(run_id: str) -> str:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise CollectError(f"not a run id: {run_id!r}")
    return run_id


def staging_dir(dest: Path, run_id: str) -> Path:
    """Where a run lands while it is fetched: hidden, named for what it is."""
    return Path(dest) / f".{_check_run_id(run_id)}.partial"


def discard(dest: Path, run_id: str) -> bool:
    """Remove an incomplete copy of the run (a collection cut short); returns whether one was there."""
    staging = staging_dir(dest, run_id)
    if not staging.exists():
        return False
    shutil.rmtree(staging)
    return True


def prepare(dest: Path, run_id: str, need_bytes: int) -> Path:
    """An empty staging directory for the run, once the controller has room for ``need_bytes``
    (plus :data:`MARGIN_BYTES`); an incomplete copy a killed collection left is removed first."""
    dest = Path(dest)
    discard(dest, run_id)
    free = free_bytes(dest)
    if free < need_bytes + MARGIN_BYTES:
        raise ControllerDiskFull(dest, run_id, need_bytes + MARGIN_BYTES, free, "checked before fetching")
    staging = staging_dir(dest, run_id)
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        if error.errno in DISK_FULL_ERRNOS:
            raise ControllerDiskFull(dest, run_id, need_bytes + MARGIN_BYTES, free_bytes(dest), str(error)) from None
        raise
    return staging


def pack_members(pack: Path) -> dict[str, int]:
    """The pack's regular files (path relative to the run -> size). Directories are allowed; a
    link, a device or a path leaving the run is refused (the pack is the host's, not ours)."""
    files: dict[str, int] = {}
    try:
        with tarfile.open(pack, "r:") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise CollectError(f"{pack}: refusing {member.name!r}, a path outside the run")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise CollectError(f"{pack}: refusing {member.name!r}, not a regular file")
                files[str(name)] = member.size
            end = archive.offset
        # A pack cut at a header reads as a shorter whole one (tar too exits 0): a whole pack ends
        # with the two zero blocks of its end-of-archive marker.
        with open(pack, "rb") as raw:
            raw.seek(end)
            if raw.read(1024) != bytes(1024):
                raise tarfile.ReadError("no end-of-archive marker: it was cut short")
    except (tarfile.TarError, OSError) as error:
        raise CollectError(f"{pack} is not a whole tar pack ({error}): run bench.yml again to fetch it anew") from None
    return files


def verify(staging: Path, files: Mapping[str, int]) -> None:
    """Every expected file is in ``staging`` at its size, or :class:`CollectError` names the first that is not."""
    for relative, size in sorted(files.items()):
        path = staging / relative
        try:
            got = path.stat().st_size
        except FileNotFoundError:
            raise CollectError(f"{path} is missing: the run's copy is incomplete") from None
        if got != size:
            raise CollectError(f"{path} holds {got} bytes, the host's {size}: the run's copy is incomplete")


def place(staging: Path, final: Path) -> Path:
    """Move a whole copy into place: one rename, or, when the run was collected before (the
    controller has added its report and listening files), each fetched file renamed over its old
    self. Renames take no space, so a full disk cannot cut this half way."""
    if not final.exists():
        os.rename(staging, final)
        return final
    for path in sorted(p for p in staging.rglob("*") if not p.is_dir()):
        target = final / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(staging)
    return final


def unpack(pack: Path, dest: Path, run_id: str) -> Path:
    """Unpack a fetched pack with ``tar`` and move the whole run to ``<dest>/<run id>``; returns it.
    Raises :class:`ControllerDiskFull` when the controller cannot hold it, before or while writing,
    and leaves nothing partial either way."""
    dest = Path(dest)
    files = pack_members(Path(pack))
    staging = prepare(dest, run_id, sum(files.values()))
    try:
        # tar itself (GNU or BSD, as on a Mac controller); its messages in English, to be read.
        extract = ["tar", "--extract", "--no-same-owner", "--file", str(pack), "--directory", str(staging)]
        done = subprocess.run(extract, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False)
        if done.returncode != 0:
            said = done.stderr.strip().splitlines()
            last = said[-1] if said else f"exit {done.returncode}"
            full = [line for line in said if any(words in line for words in DISK_FULL_WORDS)]
            if full:
                need = sum(files.values()) + MARGIN_BYTES
                raise ControllerDiskFull(dest, run_id, need, free_bytes(dest), full[0])
            raise CollectError(f"unpacking {pack} into {staging} failed: {last}")
        verify(staging, files)
        return place(staging, dest / run_id)
    except BaseException:
        discard(dest, run_id)
        raise


def place_fetched(dest: Path, run_id: str, files: Mapping[str, int]) -> Path:
    """Move a run fetched file by file into the staging directory to ``<dest>/<run id>``, once
    every file the host listed is there at its size; otherwise the copy is removed."""
    dest = Path(dest)
    staging = staging_dir(dest, run_id)
    try:
        for relative in files:
            name = PurePosixPath(relative)
            if name.is_absolute() or ".." in name.parts:
                raise CollectError(f"refusing {relative!r}, a path outside the run")
        verify(staging, files)
        return place(staging, dest / run_id)
    except BaseException:
        discard(dest, run_id)
        raise


def failure_message(dest: Path, run_id: str, need: int, detail: str) -> str:
    """What a collection whose fetch failed says (its copy already discarded): a full disk as
    :class:`ControllerDiskFull` (when the fetch said so, or what is free is below what the run
    needs), any other failure with what happened; both end with what to do next."""
    if detail.startswith(CollectError.__name__) or "run bench.yml again" in detail:
        return detail  # already one of ours, saying what to do
    free = free_bytes(dest)
    lines = [line.strip() for line in detail.strip().splitlines() if line.strip()]
    full = [line for line in lines if any(words in line for words in DISK_FULL_WORDS)]
    if full or free < need + MARGIN_BYTES:
        shown = next((words for words in DISK_FULL_WORDS if full and words in full[0]), lines[-1] if lines else "")
        return str(ControllerDiskFull(Path(dest), run_id, need + MARGIN_BYTES, free, shown))
    said = lines[-1] if lines else "no reason given"
    return (
        f"collecting run {run_id} failed ({said}): nothing partial was kept under {dest} and the host "
        "keeps the run (it is not marked collected): run bench.yml again to collect it"
    )
