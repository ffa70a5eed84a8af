"""Fixtures for pipeline runs: an isolated host state per test."""

from __future__ import annotations

import pytest

from bench_py.voice.references import add_confirmed
from tests.helpers import free_port

#: A token no file, log or output of a run may contain.
CANARY = "hf_CANARY_9f2c41d7e3b8a6"


@pytest.fixture
def bench_env(tmp_path, production_standins, reference_path, off_cotenant_cpu):
    """An isolated host state: its own state dir, token file, reference store and ports."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    token = secrets / "hf_token"
    token.write_text(CANARY + "\n")
    token.chmod(0o600)
    references = tmp_path / "voice-references"
    add_confirmed(references, "default", reference_path, "tests: festival slt")
    config = {
        "candidate": {"port": free_port(), "cpuset_cpus": "1"},
        "bench": {"client_cpus": [1]},
        "incumbent": {
            "url": production_standins["incumbent_url"],
            "token_file": production_standins["incumbent_token_file"],
        },
        "cotenant": {
            "url": production_standins["cotenant_url"],
            "control": {"kind": "container", "name": production_standins["cotenant_container"]},
        },
        "reference": {"dir": str(references)},
        "paths": {"state_dir": str(tmp_path / "state"), "token_file": str(token)},
    }
    extra = {
        "voxbench_collector_dest": str(tmp_path / "runs"),
        "voxbench_launcher_tmux_session": "voxbench-test",
        "voxbench_watcher_poll_s": 2,
    }
    return {"config": config, "extra": extra, "tmp": tmp_path, "token": token}
