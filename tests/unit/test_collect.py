"""The controller's side of collecting a run, on real files, real tar and a real small disk
(tmpfs): the room checked before anything is written, a whole copy moved into place and nothing
else, a pack that would write outside the run refused, and a run collected before (the controller
has added its report and listening files) completed without losing them."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from bench_py.results import collect
from tests.helpers import small_tmpfs


def make_run(root: Path) -> dict[str, bytes]:
    files = {
        "measurements.json": b'{"run_id": "R-20260101-120000"}\n',
        "verdict.json": b'{"verdict": "pending_listening"}\n',
        "wavs/candidate/cloned/u00.wav": b"RIFF" + bytes(range(256)) * 40,
        "logs/engine.log": b"started\nready\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def pack_of(run: Path, pack: Path) -> Path:
    """Packed as the collector packs it on the host."""
    subprocess.run(["tar", "--create", "--file", str(pack), "--directory", str(run), "--exclude=*/.*", "."], check=True)
    return pack


def test_a_pack_is_unpacked_whole_into_place_and_nothing_else_is_left(tmp_path):
    run, dest = tmp_path / "host-run", tmp_path / "runs"
    run.mkdir()
    files = make_run(run)
    (run / ".reserve").write_bytes(b"\0" * 64)  # hidden files stay on the host
    dest.mkdir()
    placed = collect.unpack(pack_of(run, dest / ".R.tar"), dest, "R")
    assert placed == dest / "R"
    assert {str(p.relative_to(placed)): p.read_bytes() for p in placed.rglob("*") if p.is_file()} == files
    assert sorted(p.name for p in dest.iterdir()) == [".R.tar", "R"]  # the role removes the pack


def test_a_disk_without_room_is_refused_before_anything_is_written(tmp_path):
    with small_tmpfs(tmp_path / "runs", "1m") as dest:
        with pytest.raises(collect.ControllerDiskFull) as refused:
            collect.prepare(dest, "R", 2 << 20)
        assert refused.value.need == (2 << 20) + collect.MARGIN_BYTES and refused.value.free <= 1 << 20
        message = str(refused.value)
        assert message.startswith(f"the controller's disk under {dest} is full (checked before fetching): run R")
        assert "the host keeps the run" in message and message.endswith("run bench.yml again; it collects this run")
        assert list(dest.iterdir()) == []


def test_a_staging_copy_a_killed_collection_left_is_replaced(tmp_path):
    dest = tmp_path / "runs"
    stale = collect.staging_dir(dest, "R")
    (stale / "wavs").mkdir(parents=True)
    (stale / "wavs" / "half.wav").write_bytes(b"RIFF")
    assert collect.prepare(dest, "R", 0) == stale and list(stale.iterdir()) == []


def test_a_fetched_copy_missing_a_file_or_short_of_bytes_is_discarded(tmp_path):
    run, dest = tmp_path / "host-run", tmp_path / "runs"
    run.mkdir()
    files = make_run(run)
    sizes = {name: len(data) for name, data in files.items()}
    for broken in ("missing", "short"):
        staging = collect.prepare(dest, "R", 0)
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        take = staging / "wavs/candidate/cloned/u00.wav"
        if broken == "missing":
            take.unlink()
        else:
            take.write_bytes(files["wavs/candidate/cloned/u00.wav"][:100])
        with pytest.raises(collect.CollectError, match=r"u00\.wav .*the run's copy is incomplete"):
            collect.place_fetched(dest, "R", sizes)
        assert list(dest.iterdir()) == []  # neither runs/R nor the staging copy


def test_a_run_collected_again_keeps_what_the_controller_added(tmp_path):
    run, dest = tmp_path / "host-run", tmp_path / "runs"
    run.mkdir()
    files = make_run(run)
    collect.unpack(pack_of(run, tmp_path / "one.tar"), dest, "R")
    (dest / "R" / "scores.jsonl").write_text('{"listener": "alice"}\n')  # the controller's own
    (run / "logs" / "engine.log").write_bytes(b"started\nready\nstopped\n")  # the host's moved on
    collect.unpack(pack_of(run, tmp_path / "two.tar"), dest, "R")
    assert (dest / "R" / "scores.jsonl").read_text() == '{"listener": "alice"}\n'
    assert (dest / "R" / "logs" / "engine.log").read_bytes() == b"started\nready\nstopped\n"
    assert (dest / "R" / "measurements.json").read_bytes() == files["measurements.json"]
    assert sorted(p.name for p in dest.iterdir()) == ["R"]


def hostile_pack(path: Path, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    with tarfile.open(path, "w") as archive:
        member = tarfile.TarInfo(name)
        member.type = kind
        data = b"x" if kind == tarfile.REGTYPE else b""
        member.size = len(data)
        if kind == tarfile.SYMTYPE:
            member.linkname = "/etc/passwd"
        archive.addfile(member, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("name", "kind", "said"),
    [
        ("../outside.json", tarfile.REGTYPE, "a path outside the run"),
        ("/etc/cron.d/x", tarfile.REGTYPE, "a path outside the run"),
        ("./wavs/link.wav", tarfile.SYMTYPE, "not a regular file"),
    ],
)
def test_a_pack_that_would_write_outside_the_run_or_a_link_is_refused(tmp_path, name, kind, said):
    dest = tmp_path / "runs"
    pack = hostile_pack(tmp_path / "bad.tar", name, kind)
    with pytest.raises(collect.CollectError, match=said):
        collect.unpack(pack, dest, "R")
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not (tmp_path / "outside.json").exists()


def test_a_pack_cut_short_is_refused_saying_to_fetch_it_again(tmp_path):
    run = tmp_path / "host-run"
    run.mkdir()
    make_run(run)
    pack = pack_of(run, tmp_path / "whole.tar")
    whole = pack.read_bytes()
    for size in (1500, 2048, 3000, len(whole) - 10240):  # in a header, at one, in a file's data, before the end
        cut = tmp_path / "cut.tar"
        cut.write_bytes(whole[:size])
        with pytest.raises(collect.CollectError, match=rf"^{re.escape(str(cut))} is not a whole tar pack .*run bench"):
            collect.unpack(cut, tmp_path / "runs", "R")
        assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("run_id", ["", ".hidden", "a/b", ".."])
def test_a_run_id_that_is_not_a_name_is_refused(tmp_path, run_id):
    with pytest.raises(collect.CollectError, match="not a run id"):
        collect.staging_dir(tmp_path, run_id)


def test_a_failed_fetch_says_why_and_what_to_do(tmp_path):
    fetch_said = "Failed to transfer file: [Errno 28] No space left on device: b'x'"
    said = collect.failure_message(tmp_path, "R", 10, fetch_said)
    assert said.startswith(f"the controller's disk under {tmp_path} is full (No space left on device): run R")
    other = collect.failure_message(tmp_path, "R", 10, "Data could not be sent to remote host\n")
    assert other == (
        "collecting run R failed (Data could not be sent to remote host): nothing partial was kept under "
        f"{tmp_path} and the host keeps the run (it is not marked collected): run bench.yml again to collect it"
    )
    ours = str(collect.ControllerDiskFull(tmp_path, "R", 10, 0))
    assert collect.failure_message(tmp_path, "R", 10, ours) == ours
