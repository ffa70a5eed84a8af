"""A full disk, for real (a small tmpfs): atomic writes leave old files whole and no temporaries,
the reserve is real space, and the abort flag gets written into it."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from bench_py.audio import Pcm, read_wav_file, write_wav_file
from bench_py.files import atomic_write_json
from bench_py.run import space
from bench_py.run.abort import read_abort, request_abort
from tests.helpers import fill_disk, small_tmpfs


@pytest.fixture
def disk(tmp_path):
    with small_tmpfs(tmp_path / "disk", "2m") as where:
        yield where


def tone(seconds: float) -> Pcm:
    t = np.arange(int(24_000 * seconds)) / 24_000
    return Pcm((np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16), 24_000)


def test_the_reserve_is_allocated_space_and_its_release_gives_it_back(disk):
    before = space.free_bytes(disk)
    assert space.make_reserve(disk, 1 << 20) == 1 << 20
    assert (disk / space.RESERVE).stat().st_blocks * 512 >= 1 << 20  # blocks, not a sparse file
    assert space.free_bytes(disk) <= before - (1 << 20)
    assert space.release_reserve(disk) == 1 << 20
    assert space.free_bytes(disk) == before and space.release_reserve(disk) == 0


def test_a_reserve_the_disk_cannot_hold_raises_enospc_and_leaves_nothing(disk):
    with pytest.raises(OSError) as caught:
        space.make_reserve(disk, 8 << 20)
    assert space.is_disk_full(caught.value) and not (disk / space.RESERVE).exists()


def test_a_wav_cut_by_a_full_disk_is_absent_and_the_old_take_stays_whole(disk):
    write_wav_file(str(disk / "u00.wav"), tone(0.5))
    fill_disk(disk)
    with pytest.raises(OSError) as caught:
        write_wav_file(str(disk / "u01.wav"), tone(1.0))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(disk / "u01.wav")
    with pytest.raises(OSError):
        write_wav_file(str(disk / "u00.wav"), tone(1.0))  # overwriting the old take fails too ...
    assert len(read_wav_file(str(disk / "u00.wav")).samples) == 12_000  # ... and it is still whole
    assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "u00.wav"]  # no half WAV, no temporary


def test_a_json_document_cut_by_a_full_disk_keeps_the_old_one(disk):
    atomic_write_json(disk / "bench.json", {"records": [1]})
    fill_disk(disk)
    with pytest.raises(OSError):
        atomic_write_json(disk / "bench.json", {"records": list(range(100_000))})
    assert json.loads((disk / "bench.json").read_text()) == {"records": [1]}
    assert sorted(p.name for p in disk.iterdir()) == ["bench.json", "filler.bin"]


def test_the_abort_flag_takes_the_reserve_when_the_disk_is_full(disk):
    run_dir = disk / "run"
    run_dir.mkdir()
    space.make_reserve(run_dir, 256 << 10)
    fill_disk(disk)
    flag = request_abort(run_dir, "disk_full", "the disk is full")
    assert read_abort(run_dir) == flag and not (run_dir / space.RESERVE).exists()


def test_the_reason_names_the_file_and_the_free_space(disk):
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(disk / "wavs" / "u03.wav"))
    reason = space.disk_full_reason(error, disk)
    assert "u03.wav" in reason and "No space left on device" in reason and "bytes free" in reason
    assert space.is_disk_full(error) and not space.is_disk_full(OSError(errno.EACCES, "denied"))
