"""Fixtures for pipeline runs: an isolated host state per test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_py.voice.references import add_confirmed
from tests.helpers import ROOT, bench_containers, free_port

#: A token no file, log or output of a run may contain.
CANARY = "hf_CANARY_9f2c41d7e3b8a6"


def make_bench_env(tmp_path: Path, production_standins: dict, reference_path: Path) -> dict:
    """An isolated host state: its own state dir, token file, reference store, ports and artifacts repo."""
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
        "voxbench_artifacts_repo": str(tmp_path / "artifacts" / "checkout"),
        "voxbench_collector_proxies": False,  # computed once, on the shared finished run
    }
    return {"config": config, "extra": extra, "tmp": tmp_path, "token": token}


@pytest.fixture
def bench_env(tmp_path, production_standins, reference_path, off_cotenant_cpu):
    return make_bench_env(tmp_path, production_standins, reference_path)


SETUP_CANARY = "hf_SETUP_CANARY_51d0c3a9"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def setup_run(test_hosts, session_dir):
    """Run setup.yml with the test inventory and a canary token; returns a runner."""
    token = session_dir / "controller_hf_token"
    token.write_text(SETUP_CANARY + "\n")
    token.chmod(0o600)

    def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(test_hosts["inventory"]),
                "setup.yml",
                "-e",
                f"voxbench_token_source_file={token}",
                "-e",
                f"voxbench_runtime_bundle_cache={session_dir / 'bundles'}",
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORKS": "5"},
        )
        return result, time.monotonic() - started

    return run


def recap(output: str) -> dict[str, dict[str, int]]:
    rows = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        rows[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return rows


@pytest.fixture(scope="session")
def converged(setup_run, test_hosts):
    check, _ = setup_run("--check", "--diff")
    first, first_s = setup_run()
    second, second_s = setup_run()
    print(
        f"\nsetup.yml over SSH, {len(test_hosts['hosts'])} hosts: first converge {first_s:.1f} s, "
        f"second run {second_s:.1f} s; second-run changed per host: "
        f"{ {h: r['changed'] for h, r in recap(second.stdout).items()} }"
    )
    return {"check": check, "first": first, "second": second}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, production_standins, reference_path, docker_client):
    """One fast-profile bench.yml run on the embedded default, published on its branch (tests copy
    the run directory before changing anything in it)."""
    tmp = tmp_path_factory.mktemp("results")
    env = make_bench_env(tmp, production_standins, reference_path)
    variables = {
        **env["extra"],
        "voxbench_collector_proxies": True,
        "voxbench_config": {"profile": "fast", **env["config"]},
    }
    (tmp / "vars.json").write_text(json.dumps(variables))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, before - {0} or before)  # off the co-tenant's CPU, as in the embedded default
    try:
        result = subprocess.run(
            [str(BIN / "ansible-playbook"), "bench.yml", "-e", f"@{tmp / 'vars.json'}", "-e", "gemma_mode=parallel"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
        )
    finally:
        os.sched_setaffinity(0, before)
    assert result.returncode == 0, result.stdout[-3000:]
    assert bench_containers(docker_client) == []
    (run_dir,) = (tmp / "runs").iterdir()
    checkout = Path(env["extra"]["voxbench_artifacts_repo"])
    return {
        "run_dir": run_dir,
        "checkout": checkout,
        "origin": checkout.parent / "origin.git",
        "tmp": tmp,
        "stdout": result.stdout,
    }


def score_by_mapping(run_dir: Path, listeners: list[str], score) -> dict:
    """Register ``listeners`` and have each answer every clip of the blind session, the score
    chosen by ``score(listener, mapping_entry)`` from the sealed mapping: the test plays the
    operator, who holds scoring/sealed.json. Returns the mapping."""
    from bench_py.judge import session as sessions

    session = sessions.create(run_dir)
    mapping = json.loads((run_dir / "scoring" / "sealed.json").read_text())["mapping"]
    for name in listeners:
        sessions.register(session, name)
        for pair in session.data["pairs"]:
            for clip in (pair["a"], pair["b"]):
                sessions.answer(session, name, pair["pair"], clip, score(name, mapping[clip]))
    return mapping


@pytest.fixture(scope="session")
def revealed_run(finished_run, tmp_path_factory):
    """A copy of the finished run that three listeners scored blind to the end (so it revealed
    itself); its report shows everything."""
    import shutil

    from bench_py.judge import session as sessions
    from bench_py.results.report import build

    copy = tmp_path_factory.mktemp("revealed") / finished_run["run_dir"].name
    shutil.copytree(finished_run["run_dir"], copy)
    score_by_mapping(copy, ["ann", "ben", "cat"], lambda who, m: 4 if m["side"] == "candidate" and who == "ann" else 3)
    session = sessions.reveal(sessions.load(copy), by="listeners")
    assert session.data["revealed_by"] == "every listener finished"
    build(copy)
    return copy
