"""Host preparation helpers: the bundle's platform tags and bytes, run recovery."""

import json
import os
import subprocess
import tarfile

from bench_py.hosts.bundle import HostPlatform, _deterministic_tar
from bench_py.hosts.cleanup import recover
from bench_py.run.space import RESERVE, make_reserve
from bench_py.run.state import State, StateStore


def test_platform_tags_cover_every_manylinux_up_to_the_hosts_glibc():
    tags = HostPlatform("3.12", "aarch64", "2.39").pip_platforms()
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux_2_39_aarch64" in tags
    assert "manylinux_2_40_aarch64" not in tags and "manylinux2014_aarch64" in tags
    assert HostPlatform("3.11", "x86_64", "2.36").tag == "cp311-x86_64-glibc2.36"


def test_bundles_of_the_same_inputs_are_byte_identical(tmp_path):
    (tmp_path / "src" / "roles").mkdir(parents=True)
    (tmp_path / "src" / "roles" / "main.yml").write_text("---\n")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    _deterministic_tar(first, [("project/roles", tmp_path / "src" / "roles")], {"version_id": "x"})
    (tmp_path / "src" / "roles" / "main.yml").touch()  # a new mtime must not change the bundle
    _deterministic_tar(second, [("project/roles", tmp_path / "src" / "roles")], {"version_id": "x"})
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        assert {m.name for m in tar.getmembers()} == {"project/roles", "project/roles/main.yml", "manifest.json"}
        assert all(m.uid == 0 and m.mtime == 0 for m in tar.getmembers())


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_recovery_closes_runs_whose_dispatcher_is_gone(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-LOST")
    store.transition("RUN-LOST", State.BASELINE, "ok")
    store.update("RUN-LOST", changes={"dispatcher": {"pid": _dead_pid(), "host_boot_id": None}})
    assert recover(store, None, dry_run=True)[0]["reason"] == "dispatcher_lost"
    assert store.load("RUN-LOST").state == State.BASELINE  # a dry run changes nothing
    make_reserve(store.run_dir("RUN-LOST"), 4096)
    closed = recover(store, None)
    assert closed == [
        {
            "run_id": "RUN-LOST",
            "was": "BASELINE",
            "reason": "dispatcher_lost",
            "processes": [],
            "run_processes": {"found": [], "remaining": [], "verified": True},
            "cotenant_restarted": None,
            "reserve_released_bytes": 4096,
            "teardown": None,  # no configuration in its directory: closed by labels and pids
        }
    ]
    assert not (store.run_dir("RUN-LOST") / RESERVE).exists()
    state = store.load("RUN-LOST")
    assert state.state == State.ERROR_ABORTED and state.reason.startswith("dispatcher_lost")
    assert store.holder() is None


def test_recovery_after_a_reboot_and_live_runs_untouched(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-OLD-BOOT")
    store.update("RUN-OLD-BOOT", changes={"dispatcher": {"pid": 1, "host_boot_id": "a-previous-boot"}})
    assert recover(store, None)[0]["reason"] == "host_restarted"
    live = StateStore(tmp_path / "live")
    live.create("RUN-LIVE")
    live.update("RUN-LIVE", changes={"dispatcher": {"pid": os.getpid(), "host_boot_id": None}})
    assert recover(live, None) == []
    assert live.load("RUN-LIVE").state == State.PREFLIGHT


def test_the_host_side_run_reaches_only_what_the_host_bundle_installs():
    """Every third-party package the GPU host's run can import (lazy imports included) comes with
    voxbench's base dependencies or the extra setup.yml bundles (``scorer``): the controller's ASR
    stack (jiwer, pocketsphinx) must stay out of the host's reach, or setup.yml's closure check fails."""
    import contextlib
    import re
    from importlib.metadata import PackageNotFoundError, packages_distributions, requires

    from packaging.requirements import Requirement

    from bench_py.hosts import bundle, closure

    def name(dist: str) -> str:
        return re.sub(r"[-_.]+", "-", dist).lower()

    def wanted(dist: str, extra: str) -> set[str]:
        """The distributions ``dist`` (with ``extra``) requires, not through other extras."""
        out = set()
        for line in requires(dist) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                out.add(name(requirement.name))
        return out

    installed: set[str] = set()
    todo = wanted("voxbench", bundle.HOST_EXTRA) | {name(dist) for dist in bundle.DROP_INS.values() if dist}
    while todo:  # what pip installs with them, as the bundle's own pip download resolves it
        dist = todo.pop()
        if dist not in installed and dist != "voxbench":
            installed.add(dist)
            with contextlib.suppress(PackageNotFoundError):  # required under a marker not met here
                todo |= wanted(dist, "")
    by_import = packages_distributions()
    _, third_party = closure.closure()
    beyond = [
        top
        for top in third_party
        if top not in closure.OPTIONAL and not {name(d) for d in by_import.get(top, [])} & installed
    ]
    assert beyond == [], f"the host-side run reaches {beyond}, which the host's bundle does not install"


def test_a_run_started_before_the_boot_marker_was_emptied_is_host_restarted(tmp_path, monkeypatch):
    """The marker in /run is gone after any restart, a container host's included (whose kernel boot
    id is the outer machine's and never changes): the run is closed as host_restarted, exactly."""
    from bench_py.run import state as state_module

    monkeypatch.setattr(state_module, "BOOT_MARKER_DIR", tmp_path / "run" / "voxbench")
    first = state_module.boot_marker()
    assert first and state_module.boot_marker() == first  # one marker per boot, made once
    store = StateStore(tmp_path / "state")
    store.create("RUN-REBOOTED")
    dispatcher = {"pid": _dead_pid(), "host_boot_id": state_module.boot_id(), "host_boot_marker": first}
    store.update("RUN-REBOOTED", changes={"dispatcher": dispatcher})
    assert store.same_boot(store.load("RUN-REBOOTED"))
    (tmp_path / "run" / "voxbench" / "boot").unlink()  # the restart empties /run
    assert not store.same_boot(store.load("RUN-REBOOTED"))  # though the kernel's boot id is the same
    assert recover(store, None)[0]["reason"] == "host_restarted"
    assert state_module.boot_marker(create=False) is None  # recovery does not make the new boot's marker


def test_no_marker_where_run_cannot_be_written(tmp_path):
    from bench_py.run.state import boot_marker

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert boot_marker(blocked / "voxbench") is None


def test_a_marker_that_cannot_be_read_never_makes_a_live_run_rebooted(tmp_path, monkeypatch):
    """Only a marker known to be gone means a restart: one that is there but unreadable (another
    user's, say) leaves the kernel's boot id to decide, so a live run is never closed by mistake."""
    from bench_py.run import state as state_module

    marker_dir = tmp_path / "run" / "voxbench"
    monkeypatch.setattr(state_module, "BOOT_MARKER_DIR", marker_dir)
    token = state_module.boot_marker()
    assert oct((marker_dir / "boot").stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in marker_dir.iterdir()] == ["boot"]  # nothing left aside
    store = StateStore(tmp_path / "state")
    store.create("RUN-LIVE")
    store.update(
        "RUN-LIVE", changes={"dispatcher": {"host_boot_id": state_module.boot_id(), "host_boot_marker": token}}
    )
    monkeypatch.setattr(state_module, "boot_marker", lambda marker_dir=None, create=True: None)  # unreadable
    assert store.same_boot(store.load("RUN-LIVE"))
    store.update("RUN-LIVE", changes={"dispatcher": {"host_boot_id": "an-earlier-kernel", "host_boot_marker": token}})
    assert not store.same_boot(store.load("RUN-LIVE"))  # a kernel that booted again says so by itself


def test_a_pack_an_interrupted_collection_left_is_swept_once_it_is_old(tmp_path):
    import os
    import time

    from bench_py.hosts.cleanup import sweep_packs

    old, young = tmp_path / "collect-RUN-OLD.tar", tmp_path / "collect-RUN-NOW.tar"
    for pack in (old, young):
        pack.write_bytes(b"x" * 1024)
    os.utime(old, (time.time() - 5 * 3600,) * 2)
    (tmp_path / "runs").mkdir()  # anything else in the state directory is not the sweep's
    assert sweep_packs(tmp_path, 4, dry_run=True) == [old] and old.exists()
    assert sweep_packs(tmp_path, 4) == [old]
    assert not old.exists() and young.exists() and (tmp_path / "runs").is_dir()


def test_recovery_closes_a_run_through_its_own_abort_path_and_keeps_its_results(tmp_path):
    """A run with its configuration is closed as its process would have closed it: measurements.json and
    an inconclusive verdict are written (the next bench.yml collects it like any aborted run)."""
    from bench_py.config.model import load
    from bench_py.files import atomic_write_json
    from tests.unit.modules.conftest import config_overrides

    run_id = "BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000"  # measurements.json checks its form
    config = load(config_overrides(tmp_path / "state"))
    store = StateStore(config.paths.state_dir)
    store.create(run_id)
    atomic_write_json(store.run_dir(run_id) / "config.json", config.model_dump(mode="json"))
    store.update(run_id, changes={"dispatcher": {"pid": 1, "host_boot_id": "a-previous-boot"}})
    [entry] = recover(store, None)
    assert entry["reason"] == "host_restarted" and entry["teardown"] is None  # PREFLIGHT started no engine
    state = store.load(run_id)
    assert state.state == State.ERROR_ABORTED and state.reason == "host_restarted: recovered by voxbench cleanup"
    assert state.changes.get("files_written")
    run_dir = store.run_dir(run_id)
    assert json.loads((run_dir / "measurements.json").read_text())["final_state"] == "ERROR_ABORTED"
    assert json.loads((run_dir / "verdict.json").read_text())["verdict"] == "inconclusive"
    assert store.holder() is None
