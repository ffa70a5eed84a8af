"""What every module test shares: exit_json/fail_json that raise, and a run that bench_py ended."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.modules.utils import basic, exit_json, fail_json  # utils imports torch before ansible


@pytest.fixture(autouse=True)
def module_returns_raise(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)


def config_overrides(state_dir: Path) -> dict:
    """A configuration whose state lives in ``state_dir`` and that names no container to ask
    Docker about (control kind none: the run's CPU layout then reads nothing from the daemon)."""
    return {
        "gemma_mode": "parallel",
        "paths": {"state_dir": str(state_dir), "token_file": str(state_dir.parent / "hf.token")},
        "cotenant": {"control": {"kind": "none"}},
    }


@pytest.fixture(scope="session")
def ended_run_template(tmp_path_factory) -> tuple[Path, str]:
    """A state directory holding one run that bench_py's own phases ended: created and configured
    as the launcher does, then PREFLIGHT run for real with only the host checks that need Docker, a
    GPU or the network left out. The reference check fails (the project has no allowlist), so the
    run goes to ERROR_ABORTED and writes measurements.json and verdict.json as any failed run does."""
    from bench_py.config.model import load
    from bench_py.files import atomic_write_json
    from bench_py.run import preflight
    from bench_py.run.phases import Run
    from bench_py.run.phases.context import PhaseFailed
    from bench_py.run.state import StateStore, make_run_id

    root = tmp_path_factory.mktemp("ended-run")
    config = load(config_overrides(root / "state"))
    store = StateStore(config.paths.state_dir)
    run_id = make_run_id(config.candidate.name, "unit-host")
    store.create(run_id)
    atomic_write_json(store.run_dir(run_id) / "config.json", config.model_dump(mode="json"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preflight, "CHECKS", ())
        with pytest.raises(PhaseFailed, match="not in the allowlist"):
            Run(store, run_id, root / "project").run_phase("preflight")
    return store.root, run_id


@pytest.fixture
def ended_run(ended_run_template, tmp_path) -> tuple[Path, str]:
    """This test's own copy of the ended run's state directory, and the run id."""
    template, run_id = ended_run_template
    state_dir = tmp_path / "state"
    shutil.copytree(template, state_dir)
    return state_dir, run_id
