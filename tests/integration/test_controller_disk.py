"""The controller's disk fills up while a finished run is collected and while it is published
(issue 23; docs/faults.md). Real parts, no bench run: the run is one of the v0 corpus's completed
runs (its measurements and verdict, as published) with its takes written beside them, on a host
state directory; the controller's runs directory and the user's checkout are small real
filesystems (tmpfs) that fill; the collector role runs in a real ansible-playbook with real tar;
the publication goes through real git and git-lfs to a file:// origin on another disk.

The end states, written before the code that reaches them:

- collecting: the collection fails naming the controller's runs directory, the space the run needs
  and what is free, and what to do; no ``<runs>/<run id>`` exists (nothing that report, score or
  publish could take for the run) and no staging copy or pack is left; the host's run is byte for
  byte as it was and not marked collected, so ``voxbench status`` says so and the next bench.yml
  picks it; once space is freed, collecting again brings the whole run, byte for byte the host's.
- publishing: publishing fails with a disk-full error that says where and what to do; the local
  benchmark branch does not exist (no half commit), no git lock or temporary worktree is left,
  nothing reached the origin, the run's files are byte for byte as they were; once space is
  freed, publishing again pushes the commit, its WAVs as LFS pointers whose objects the origin has.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench_py.audio import Pcm, write_wav_file
from bench_py.results import collect
from bench_py.results.artifacts import PublishDiskFull, branch_name, ensure_embedded_origin
from bench_py.results.publish import publish_run, seal_session
from bench_py.results.report import build
from bench_py.run.state import State, StateStore
from tests.helpers import ROOT, small_tmpfs

BIN = Path(sys.executable).parent
V0 = ROOT / "tests" / "data" / "v0-branches"
RUN_ID = "BENCHMARK-VOXTRAL-VM-20261130-014125"  # completed, both engines' takes saved
TO_DONE = (State.BASELINE, State.STARTING, State.BENCHING, State.TEARDOWN, State.DONE)


def write_run(run_dir: Path) -> None:
    """The v0 run's files, its takes (noise of each take's recorded length) and a log."""
    for kind in ("measurements", "verdict"):
        (run_dir / f"{kind}.json").write_bytes(gzip.decompress((V0 / f"{RUN_ID}.{kind}.json.gz").read_bytes()))
    measurements = json.loads((run_dir / "measurements.json").read_text())
    rng = np.random.default_rng(23)
    for records in measurements["bench"]["records"].values():
        for record in records:
            if record.get("wav"):
                take = run_dir / record["wav"]
                take.parent.mkdir(parents=True, exist_ok=True)
                noise = (rng.standard_normal(record["samples"]) * 3000).astype(np.int16)
                write_wav_file(str(take), Pcm(noise, record["sample_rate"]))
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "logs" / "engine.log").write_text("".join(f"line {n}\n" for n in range(2000)))


def digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) by relative path -> sha256."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def host_run(tmp_path) -> dict:
    """A host state directory holding the finished run (DONE, not collected yet)."""
    store = StateStore(tmp_path / "host-state")
    store.create(RUN_ID)
    for target in TO_DONE:
        store.transition(RUN_ID, target, f"to {target}")
    write_run(store.run_dir(RUN_ID))
    return {"store": store, "run_dir": store.run_dir(RUN_ID), "tmp": tmp_path}


def collect_playbook(host_run: dict, dest: Path, *, env: dict | None = None, **extra: str) -> str:
    """The collector role alone, on the embedded inventory (host and controller this machine)."""
    play = host_run["tmp"] / "collect.yml"
    play.write_text(
        "- name: Collect a finished run\n  hosts: localhost\n  gather_facts: false\n"
        "  roles:\n    - role: voxbench_collector\n"
    )
    variables = {
        "voxbench_collector_run_id": RUN_ID,
        "voxbench_collector_run_dir": str(host_run["run_dir"]),
        "voxbench_collector_state_dir": str(host_run["store"].root),
        "voxbench_collector_dest": str(dest),
        "voxbench_collector_python": sys.executable,
        "voxbench_collector_proxies": False,
        **extra,
    }
    (host_run["tmp"] / "vars.json").write_text(json.dumps(variables))
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), str(play), "-e", f"@{host_run['tmp'] / 'vars.json'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            **(env or {}),
        },
    )
    return done.stdout + done.stderr


class FillWhen:
    """Something else fills the disk the moment ``trigger`` exists (another process's write,
    right after the collector checked the room): leaves ``leave`` bytes free."""

    def __init__(self, disk: Path, trigger: Path, leave: int) -> None:
        self.disk, self.trigger, self.leave, self.filled = disk, trigger, leave, 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._stop = threading.Event()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.trigger.exists():
                self.filled = fill_leaving(self.disk, self.leave)
                return
            time.sleep(0.002)

    def __enter__(self) -> FillWhen:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def filling_tar(tmp: Path, disk: Path, leave: int) -> dict[str, str]:
    """The environment of a controller where something else fills ``disk`` (leaving ``leave``
    bytes) the moment the run's pack starts being unpacked: the real tar, after the filler."""
    wrapper = tmp / "filling-bin"
    wrapper.mkdir(exist_ok=True)
    real = shutil.which("tar")
    (wrapper / "tar").write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --extract "*)\n'
        f"  free=$(df -B1 --output=avail {disk} | tail -1)\n"
        f"  fallocate -l $((free - {leave})) {disk}/other.bin ;;\n"
        "esac\n"
        f'exec {real} "$@"\n'
    )
    (wrapper / "tar").chmod(0o755)
    return {"PATH": f"{wrapper}:{BIN}:{os.environ['PATH']}"}


def fill_leaving(disk: Path, leave: int) -> int:
    """Fill ``disk`` with a file of really allocated blocks until ``leave`` bytes stay free."""
    size = max(shutil.disk_usage(disk).free - leave, 0)
    subprocess.run(["fallocate", "-l", str(size), str(disk / "other.bin")], check=True)
    return size


def assert_nothing_collected(dest: Path, host_run: dict, before: dict[str, str]) -> None:
    assert not (dest / RUN_ID).exists(), "a partial run where report, score and publish look"
    assert not collect.staging_dir(dest, RUN_ID).exists() and not (dest / f".{RUN_ID}.tar").exists()
    assert digests(host_run["run_dir"]) == before  # the host's copy untouched, state.json included
    assert not (host_run["store"].root / f"collect-{RUN_ID}.tar").exists()  # the host's pack removed
    store = host_run["store"]
    assert store.latest_uncollected() == RUN_ID  # the next bench.yml collects it ...
    assert [r["collected"] for r in store.summaries() if r["run_id"] == RUN_ID] == [False]  # ... and status says so


def test_a_full_controller_disk_while_collecting_keeps_nothing_partial_and_the_run_comes_whole_later(host_run):
    """Four collections of one run into a 16 MiB runs directory: the pack's unpack meets a disk
    something else filled after the room check (tar writes part of the run, then ENOSPC); the
    file-by-file fetch (the host cannot hold a pack) meets the same mid-fetch; a disk already too
    full is refused before anything is fetched; then, with the space freed, the run comes whole."""
    before = digests(host_run["run_dir"])
    run_bytes = sum((host_run["run_dir"] / name).stat().st_size for name in before)
    dest = host_run["tmp"] / "runs"
    with small_tmpfs(dest, "16m"):
        # 1. The pack: the disk fills as tar starts unpacking, leaving room for part of the run.
        output = collect_playbook(host_run, dest, env=filling_tar(host_run["tmp"], dest, run_bytes // 3))
        assert (dest / "other.bin").is_file(), output
        assert "failed=1" in output and "Unpack the run on the controller" in output, output
        assert f"the controller's disk under {dest} is full (" in output and "tar: ./" in output, output
        assert "Cannot write: No space left on device" in output
        assert "No space left on device" in output and "free at least" in output and "run bench.yml again" in output
        assert_nothing_collected(dest, host_run, before)
        (dest / "other.bin").unlink()

        # 2. File by file (the host's pack directory is a disk too small for a pack): it fills mid-fetch.
        with small_tmpfs(host_run["tmp"] / "host-full", "1m") as host_full:
            pack = str(host_full / f"collect-{RUN_ID}.tar")
            with FillWhen(dest, collect.staging_dir(dest, RUN_ID), run_bytes // 3) as filler:
                output = collect_playbook(host_run, dest, voxbench_collector_pack=pack)
        assert "fetching file by file" in output, output
        assert filler.filled > 0 and "failed=1" in output, output
        assert f"the controller's disk under {dest} is full" in output and "run bench.yml again" in output, output
        assert_nothing_collected(dest, host_run, before)
        (dest / "other.bin").unlink()

        # 3. Too little room from the start: refused before anything is fetched.
        fill_leaving(dest, run_bytes)
        output = collect_playbook(host_run, dest)
        assert "failed=1" in output and "checked before fetching" in output, output
        assert_nothing_collected(dest, host_run, before)

        # 4. Space freed: the next collection brings the run whole.
        (dest / "other.bin").unlink()
        output = collect_playbook(host_run, dest)
        assert "failed=0" in output, output
        collected = digests(dest / RUN_ID)
        for name, digest in before.items():
            if name != "verdict.json":  # derived again on the controller once its session is sealed, by design
                assert collected[name] == digest, name
        assert host_run["store"].latest_uncollected() is None
        assert sorted(p.name for p in dest.iterdir()) == [RUN_ID]  # no staging copy, no pack


@pytest.fixture
def sealed_run(tmp_path) -> Path:
    """The run as the collector leaves it on the controller: sealed, its report built."""
    run_dir = tmp_path / "controller" / RUN_ID
    run_dir.mkdir(parents=True)
    write_run(run_dir)
    seal_session(run_dir)
    build(run_dir)
    return run_dir


def git(*args: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


#: Where the disk fills: (bytes left free, given the publication's size; a hook of the user's that fills it).
FULL_AT = {
    # Room for the fetch and the worktree's checkout, not for the copies of the takes.
    "copying": (lambda size: 1 << 20, None),
    # Room for the copies, not for git-lfs's objects of them (git add's clean filter meets it).
    "lfs": (lambda size: size + size // 2, None),
    # A pre-commit hook (the user's own, say) fills the disk: git's tree, commit and ref writes meet it.
    "commit": (lambda size: 0, "pre-commit"),
}


@pytest.mark.parametrize("moment", sorted(FULL_AT))
def test_a_full_controller_disk_while_publishing_leaves_no_half_commit_and_publishing_again_pushes(
    sealed_run, tmp_path, monkeypatch, moment
):
    home = tmp_path / "home"
    checkout = ensure_embedded_origin(home)  # the origin (GitHub) is on another disk than the checkout
    origin = home / "origin.git"
    before = digests(sealed_run)
    branch = branch_name("voxtral", RUN_ID)
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "24m"):
        clone = disk / "checkout"
        shutil.copytree(checkout, clone)  # the user's checkout lives on the small disk
        monkeypatch.setenv("TMPDIR", str(disk / "tmp"))  # and so does the temporary worktree
        (disk / "tmp").mkdir()
        monkeypatch.setattr(tempfile, "tempdir", None)
        leave, hook = FULL_AT[moment]
        if hook:
            script = clone / ".git" / "hooks" / hook
            script.write_text(f"#!/bin/sh\nfallocate -l $(df -B1 --output=avail {disk} | tail -1) {disk}/other.bin\n")
            script.chmod(0o755)
        else:
            clips = sealed_run / "scoring" / "clips"
            fill_leaving(disk, leave(sum(path.stat().st_size for path in clips.glob("*.wav"))))
        with pytest.raises(PublishDiskFull) as failed:
            publish_run(sealed_run, clone)
        message = str(failed.value)
        assert "No space left on device" in message and f"free under {clone}" in message, message
        assert "Nothing was pushed" in message and "publish the run again" in message
        # No half commit: the branch this publication created is gone, no lock, no worktree left.
        assert git("branch", "--list", branch, cwd=clone) == ""
        assert list((clone / ".git").rglob("*.lock")) == []
        lfs = clone / ".git" / "lfs"
        for stored in (lfs / "objects").rglob("*") if lfs.exists() else []:  # whole objects only, kept for next time
            assert stored.is_dir() or hashlib.sha256(stored.read_bytes()).hexdigest() == stored.name
        assert [p.name for p in (lfs / "tmp").rglob("*") if p.is_file()] == []  # git-lfs's half-written object removed
        assert git("worktree", "list", "--porcelain", cwd=clone).count("worktree ") == 1
        assert [p.name for p in (disk / "tmp").iterdir()] == []
        assert git("branch", "--show-current", cwd=clone) == "main" and git("status", "--porcelain", cwd=clone) == ""
        # Nothing reached the origin, and the run is as the collector left it.
        assert git("branch", "--list", branch, cwd=origin) == ""
        assert digests(sealed_run) == before
        # Space freed: publishing again commits and pushes the whole publication.
        (disk / "other.bin").unlink()
        if hook:
            (clone / ".git" / "hooks" / hook).unlink()
        published = publish_run(sealed_run, clone)
        assert published.committed and published.pushed
        assert git("rev-parse", f"refs/heads/{branch}", cwd=origin) == published.commit
        git("lfs", "fsck", cwd=clone)  # every LFS pointer on the local branch has its object
    fresh = tmp_path / "fresh"
    no_smudge = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}
    git("clone", "--quiet", "-b", branch, origin.as_uri(), str(fresh), cwd=tmp_path, env=no_smudge)
    clips = sorted((sealed_run / "scoring" / "clips").glob("*.wav"))
    assert clips
    folder = fresh / "docs" / RUN_ID / "scoring" / "clips"
    for clip in clips:
        assert (folder / clip.name).read_bytes().startswith(b"version https://git-lfs.github.com/spec/v1")
    git("lfs", "pull", cwd=fresh)  # the origin has every object
    for clip in clips:
        assert (folder / clip.name).read_bytes() == clip.read_bytes()


def test_a_run_directory_on_a_full_disk_is_not_published_and_keeps_its_files(tmp_path):
    """Publishing first seals the session and rebuilds the report in the run directory: when that
    disk is full, nothing is committed and the run's files stay as they were."""
    checkout = ensure_embedded_origin(tmp_path / "home")
    with small_tmpfs(tmp_path / "controller", "8m") as disk:
        run_dir = disk / RUN_ID
        run_dir.mkdir()
        write_run(run_dir)
        before = digests(run_dir)
        fill_leaving(disk, 0)
        with pytest.raises(PublishDiskFull) as failed:
            publish_run(run_dir, checkout)
        assert str(failed.value).startswith(f"the disk under {run_dir} is full (No space left on device"), failed.value
        assert "nothing was committed" in str(failed.value) and "publish the run again" in str(failed.value)
        assert digests(run_dir) == before
        assert git("branch", "--list", "voxtral-bench-*", cwd=checkout) == ""
        assert [k for k in digests(run_dir) if k not in before] == []  # no half-made session left taking the space
