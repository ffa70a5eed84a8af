"""voxbench run's closing step: a run its process left open is aborted by a fresh one, once."""

from __future__ import annotations

import json

from bench_py.config.model import load
from bench_py.files import atomic_write_json
from bench_py.run import runner
from bench_py.run.state import StateStore
from tests.unit.modules.conftest import config_overrides

RUN_ID = "BENCHMARK-VOXTRAL-UNIT-HOST-20260101-120000"


def test_a_run_left_open_is_closed_once_and_a_closed_one_is_left_alone(tmp_path):
    config = load(config_overrides(tmp_path / "state"))
    store = StateStore(config.paths.state_dir)
    store.create(RUN_ID)  # PREFLIGHT, as a run whose process died before its first check
    atomic_write_json(store.run_dir(RUN_ID) / "config.json", config.model_dump(mode="json"))
    said: list[str] = []
    assert runner.close_unfinished(store.root, RUN_ID, tmp_path / "project", said.append) == 1
    state = store.load(RUN_ID)
    assert str(state.state) == "ERROR_ABORTED" and state.changes.get("files_written")
    assert "ended in PREFLIGHT without closing the run" in (state.reason or "")
    flag = json.loads((store.run_dir(RUN_ID) / "abort.json").read_text())  # who ended it, as every abort says
    assert flag["by"] == "process_lost" and flag["reason"] == state.reason
    assert (store.run_dir(RUN_ID) / "measurements.json").is_file()
    assert runner.close_unfinished(store.root, RUN_ID, tmp_path / "project", said.append) == 0  # nothing left
    assert said[0].startswith("closing: ") and len(said) == 2


def test_a_host_shutting_down_leaves_the_run_to_its_next_boot(tmp_path, monkeypatch):
    """A reboot stops the run's process: the closing step then closes nothing (a teardown would be
    cut off half-way); the boot's recovery closes the run as host_restarted."""
    config = load(config_overrides(tmp_path / "state"))
    store = StateStore(config.paths.state_dir)
    store.create(RUN_ID)
    atomic_write_json(store.run_dir(RUN_ID) / "config.json", config.model_dump(mode="json"))
    monkeypatch.setattr(runner, "host_shutting_down", lambda: True)
    said: list[str] = []
    assert runner.close_unfinished(store.root, RUN_ID, tmp_path / "project", said.append) == 1
    assert str(store.load(RUN_ID).state) == "PREFLIGHT"  # still open, for voxbench-recover at boot
    assert not (store.run_dir(RUN_ID) / "measurements.json").exists()
    assert said == [
        f"the host is shutting down: run {RUN_ID} (PREFLIGHT) is closed at its next boot (voxbench-recover)"
    ]


def test_only_systemd_stopping_counts_as_a_shutdown(tmp_path, monkeypatch):
    from bench_py import processes

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text('#!/bin/sh\necho "$ANSWER"\n')
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    for answer, stopping in (("stopping", True), ("running", False), ("degraded", False), ("offline", False)):
        monkeypatch.setenv("ANSWER", answer)
        assert processes.host_shutting_down(tmp_path) is stopping, answer
    assert processes.host_shutting_down(tmp_path / "no-systemd") is False  # not the service manager
