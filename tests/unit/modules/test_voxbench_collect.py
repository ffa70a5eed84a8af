"""voxbench_collect: the controller's side of the collector, as the role calls it (prepare, then
unpack or place; discard after a failed fetch), on real files and real tar."""

from __future__ import annotations

import subprocess

from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

collect_module = load_module("voxbench_collect")
RUN = "BENCHMARK-VOXTRAL-TITAN-20260101-120000"


def host_run(tmp_path):
    run = tmp_path / "host" / RUN
    (run / "wavs").mkdir(parents=True)
    (run / "measurements.json").write_text("{}\n")
    (run / "wavs" / "u00.wav").write_bytes(b"RIFF" + b"\1" * 4000)
    return run


def test_a_pack_is_prepared_for_unpacked_and_put_in_place(tmp_path):
    run, dest = host_run(tmp_path), tmp_path / "runs"
    base = {"dest": str(dest), "run_id": RUN}
    prepared = run_module(collect_module, {**base, "step": "prepare", "need_bytes": 8000})
    assert prepared["staging"] == str(dest / f".{RUN}.partial") and undocumented(collect_module, prepared) == []
    pack = dest / f".{RUN}.tar"
    subprocess.run(["tar", "--create", "--file", str(pack), "--directory", str(run), "."], check=True)
    done = run_module(collect_module, {**base, "step": "unpack", "pack": str(pack)})
    assert done == {"changed": True, "run_dir": str(dest / RUN), "pack_removed": True}
    assert undocumented(collect_module, done) == []
    assert (dest / RUN / "wavs" / "u00.wav").read_bytes() == (run / "wavs" / "u00.wav").read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [RUN]  # the pack is gone, nothing staged is left


def test_files_fetched_one_by_one_are_placed_once_all_are_there_at_their_size(tmp_path):
    run, dest = host_run(tmp_path), tmp_path / "runs"
    base = {"dest": str(dest), "run_id": RUN, "run_dir": str(run)}
    listed = [{"path": str(p), "size": p.stat().st_size, "mode": "0644"} for p in run.rglob("*") if p.is_file()]
    staging = run_module(collect_module, {**base, "step": "prepare"})["staging"]
    subprocess.run(["cp", "-r", f"{run}/.", staging], check=True)
    (dest / f".{RUN}.partial" / "wavs" / "u00.wav").write_bytes(b"RIFF")  # cut short
    failed = fail_module(collect_module, {**base, "step": "place", "files": listed})
    assert failed["msg"].endswith("holds 4 bytes, the host's 4004: the run's copy is incomplete")
    assert list(dest.iterdir()) == []
    staging = run_module(collect_module, {**base, "step": "prepare"})["staging"]
    subprocess.run(["cp", "-r", f"{run}/.", staging], check=True)
    assert run_module(collect_module, {**base, "step": "place", "files": listed})["run_dir"] == str(dest / RUN)


def test_discard_removes_the_copy_and_says_why_and_what_to_do(tmp_path):
    dest = tmp_path / "runs"
    base = {"dest": str(dest), "run_id": RUN}
    run_module(collect_module, {**base, "step": "prepare"})
    said = "Failed to transfer file to 'x': [Errno 28] No space left on device"
    result = run_module(collect_module, {**base, "step": "discard", "need_bytes": 10, "detail": said})
    assert result["discarded"] is True and result["changed"] is True and undocumented(collect_module, result) == []
    assert result["error"].startswith(f"the controller's disk under {dest} is full (No space left on device)")
    assert list(dest.iterdir()) == []
    again = run_module(collect_module, {**base, "step": "discard", "detail": "Connection reset"})
    assert again["discarded"] is False and again["error"].startswith(f"collecting run {RUN} failed (Connection reset)")


def test_unpack_needs_the_pack_and_place_the_hosts_run_dir(tmp_path):
    base = {"dest": str(tmp_path), "run_id": RUN}
    assert "pack" in fail_module(collect_module, {**base, "step": "unpack"})["msg"]
    assert "run_dir" in fail_module(collect_module, {**base, "step": "place"})["msg"]
