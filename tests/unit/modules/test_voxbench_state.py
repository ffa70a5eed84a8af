"""voxbench_state: a run's state file read (and waited on) through the module, as the watcher does."""

from __future__ import annotations

import os
import threading
import time

from bench_py.processes import process_start
from bench_py.run.state import State, StateStore
from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

state_module = load_module("voxbench_state")


def test_run_id_is_required():
    result = fail_module(state_module, {"state_dir": "/nonexistent"})
    assert result["msg"] == "missing required arguments: run_id"


def test_wait_s_must_be_a_number(tmp_path):
    result = fail_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-1", "wait_s": "soon"})
    assert "wait_s" in result["msg"] and "float" in result["msg"]


def test_an_unknown_run_fails_naming_it_and_the_state_directory(tmp_path):
    StateStore(tmp_path).create("RUN-1")
    result = fail_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-2"})
    assert result["msg"] == f"no run RUN-2 under {tmp_path}"


def test_a_run_in_progress_returns_every_field_the_watcher_reads(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    store.update("RUN-1", phase={"utterance": 3, "of": 20})
    result = run_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-1"})
    assert result["changed"] is False
    assert result["state"] == "PREFLIGHT"
    assert result["terminal"] is False
    assert result["files_written"] is False
    assert result["phase"] == {"utterance": 3, "of": 20}
    assert result["reason"] is None
    assert [entry["reason"] for entry in result["history"]] == ["run created"]
    assert result["dispatcher_alive"] is None  # no dispatcher recorded: unknown, not dead
    assert undocumented(state_module, result) == []


def test_dispatcher_alive_says_whether_the_recorded_process_runs(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    me = {"pid": os.getpid(), "pid_start": process_start(os.getpid())}
    store.update("RUN-1", changes={"dispatcher": me})
    assert run_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-1"})["dispatcher_alive"] is True
    # The same pid, but recorded with another start time: a process that reused the pid is not the dispatcher.
    store.update("RUN-1", changes={"dispatcher": {**me, "pid_start": "1"}})
    assert run_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-1"})["dispatcher_alive"] is False


def test_a_run_that_bench_py_ended_is_terminal_with_its_files_written_and_reason(ended_run):
    state_dir, run_id = ended_run
    result = run_module(state_module, {"state_dir": str(state_dir), "run_id": run_id})
    assert result["state"] == "ERROR_ABORTED" and result["terminal"] is True
    assert result["files_written"] is True
    assert result["reason"].startswith("preflight failed: the reference clip")
    assert [entry["to"] for entry in result["history"]] == ["PREFLIGHT", "ERROR_ABORTED"]


def test_mark_collected_records_once_and_check_mode_records_nothing(ended_run):
    state_dir, run_id = ended_run
    args = {"state_dir": str(state_dir), "run_id": run_id, "mark_collected": True}
    assert run_module(state_module, args, check_mode=True)["changed"] is False
    store = StateStore(state_dir)
    assert not store.load(run_id).changes.get("collected")
    assert store.latest_uncollected() == run_id
    assert run_module(state_module, args)["changed"] is True
    assert store.load(run_id).changes.get("collected")
    assert store.latest_uncollected() is None  # a later launch starts a new run instead of attaching
    assert run_module(state_module, args)["changed"] is False


def test_marking_collected_removes_the_pack_in_the_same_round_trip(ended_run, tmp_path):
    state_dir, run_id = ended_run
    pack = tmp_path / "pack.tar"
    pack.write_bytes(b"tar")
    args = {"state_dir": str(state_dir), "run_id": run_id, "mark_collected": True, "remove_pack": str(pack)}
    assert run_module(state_module, args, check_mode=True)["changed"] is False and pack.exists()
    assert run_module(state_module, args)["changed"] is True and not pack.exists()
    assert StateStore(state_dir).load(run_id).changes.get("collected")
    assert run_module(state_module, args)["changed"] is False  # marked, and no pack: nothing to do
    pack.write_bytes(b"tar")  # a pack left from before: removing it alone is a change
    assert run_module(state_module, args)["changed"] is True and not pack.exists()
    pack.mkdir()
    assert "is a directory" in fail_module(state_module, args)["msg"] and pack.is_dir()
    without_mark = {"state_dir": str(state_dir), "run_id": run_id, "remove_pack": str(pack)}
    assert "mark_collected" in fail_module(state_module, without_mark)["msg"]


def test_wait_s_answers_as_soon_as_the_state_file_changes(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    mover = threading.Timer(0.3, store.transition, ("RUN-1", State.BASELINE, "preflight passed"))
    mover.start()
    started = time.monotonic()
    try:
        result = run_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-1", "wait_s": 30})
    finally:
        mover.cancel()
    assert result["state"] == "BASELINE"
    assert time.monotonic() - started < 10  # it answered on the change, not after wait_s


def test_progress_alone_answers_only_after_progress_s_but_a_transition_at_once(tmp_path):
    """The watcher's pace: a request timed (progress) every 0.1 s must not end each poll; the
    transition that follows does, at once."""
    store = StateStore(tmp_path)
    store.create("RUN-1")
    stop = threading.Event()

    def progress() -> None:
        n = 0
        while not stop.wait(0.1):
            n += 1
            store.update("RUN-1", phase={"name": "PREFLIGHT", "utterance": n, "of": 100})

    ticker = threading.Thread(target=progress)
    ticker.start()
    try:
        args = {"state_dir": str(tmp_path), "run_id": "RUN-1", "wait_s": 30, "progress_s": 1.0}
        started = time.monotonic()
        result = run_module(state_module, args)
        waited = time.monotonic() - started
        assert result["phase"]["utterance"] >= 5 and 1.0 <= waited < 10  # progress, but only after progress_s
        mover = threading.Timer(0.2, store.transition, ("RUN-1", State.BASELINE, "preflight passed"))
        mover.start()
        started = time.monotonic()
        result = run_module(state_module, {**args, "progress_s": 20.0})
        assert result["state"] == "BASELINE" and time.monotonic() - started < 10  # the transition, at once
    finally:
        stop.set()
        ticker.join()


def test_an_ended_run_still_writing_its_files_is_waited_for(tmp_path):
    """Ended but its measurements not yet written: the poll waits for them rather than answering at
    once again and again (the watcher's until loop would spin)."""
    store = StateStore(tmp_path)
    store.create("RUN-1")
    store.transition("RUN-1", State.ERROR_ABORTED, "preflight failed")
    writer = threading.Timer(0.5, store.update, ("RUN-1",), {"changes": {"files_written": "now"}})
    writer.start()
    started = time.monotonic()
    try:
        result = run_module(state_module, {"state_dir": str(tmp_path), "run_id": "RUN-1", "wait_s": 30})
    finally:
        writer.cancel()
    assert result["terminal"] is True and result["files_written"] is True
    assert 0.4 <= time.monotonic() - started < 10


def test_wait_s_on_an_ended_run_answers_at_once(ended_run):
    state_dir, run_id = ended_run
    started = time.monotonic()
    result = run_module(state_module, {"state_dir": str(state_dir), "run_id": run_id, "wait_s": 30})
    assert result["terminal"] is True and time.monotonic() - started < 10


def test_a_run_id_that_is_not_one_fails_saying_so(tmp_path):
    result = fail_module(state_module, {"state_dir": str(tmp_path), "run_id": "../RUN-1"})
    assert "not a run id" in result["msg"]
