"""The run's state machine: only the table's transitions, atomic persistence, the host lock."""

import json

import pytest

from bench_py.run.state import TRANSITIONS, HostLockedError, State, StateError, StateStore


def test_the_table_has_seven_states_and_eleven_transitions():
    assert len(State) == 7
    assert len(TRANSITIONS) == 11
    assert [t.number for t in TRANSITIONS] == list(range(1, 12))


def test_a_run_walks_the_happy_path_and_releases_the_lock(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    assert store.holder() == "RUN-1"
    for target in (State.BASELINE, State.STARTING, State.BENCHING, State.TEARDOWN, State.DONE):
        store.transition("RUN-1", target, f"to {target}")
    state = store.load("RUN-1")
    assert state.state == State.DONE and state.terminal
    assert [h["transition"] for h in state.history[1:]] == [1, 3, 5, 8, 10]
    assert store.holder() is None


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], State.BENCHING),  # PREFLIGHT cannot skip to BENCHING
        ([State.BASELINE], State.TEARDOWN),  # BASELINE never tears down: nothing started
        ([State.ERROR_ABORTED], State.BASELINE),  # terminal is terminal
    ],
)
def test_moves_off_the_table_are_refused(tmp_path, path, target):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    for step in path:
        store.transition("RUN-1", step, "setup")
    with pytest.raises(StateError, match="cannot go from"):
        store.transition("RUN-1", target, "illegal")


def test_expect_names_where_the_run_is(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    with pytest.raises(StateError, match="is in PREFLIGHT, not BENCHING"):
        store.expect("RUN-1", State.BENCHING)


def test_a_second_run_is_refused_while_one_holds_the_host(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    with pytest.raises(HostLockedError) as error:
        store.create("RUN-2")
    assert error.value.holder == "RUN-1" and "attach" in str(error.value)
    store.transition("RUN-1", State.ERROR_ABORTED, "preflight failed")
    store.create("RUN-2")  # the first ended: the host is free again


def test_state_files_are_whole_json_and_changes_accumulate(tmp_path):
    store = StateStore(tmp_path)
    store.create("RUN-1")
    store.update("RUN-1", changes={"containers": "c1"})
    store.update("RUN-1", changes={"containers": "c1"})
    store.update("RUN-1", changes={"containers": "c2"}, phase={"utterance": 3})
    data = json.loads((tmp_path / "runs" / "RUN-1" / "state.json").read_text())
    assert data["changes"]["containers"] == ["c1", "c2"]
    assert data["phase"] == {"utterance": 3}
    assert not list((tmp_path / "runs" / "RUN-1").glob(".state.json.*"))  # no temporaries left


@pytest.mark.parametrize("bad", ["", "../x", ".hidden", "a/b"])
def test_run_ids_cannot_escape_the_state_dir(tmp_path, bad):
    with pytest.raises(ValueError):
        StateStore(tmp_path).run_dir(bad)


def test_the_docs_draw_the_state_machine_from_the_table():
    from pathlib import Path

    from bench_py.run.state import mermaid_diagram

    docs = (Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text()
    assert "```mermaid\n" + mermaid_diagram() + "```" in docs
    assert mermaid_diagram().count(" --> ") == 11 + 3
