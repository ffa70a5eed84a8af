"""`make rehearsal`, run as a user runs it: the production route on test hosts named titan and
panda — inventory/titan.example changed only on the allow-list, setup.yml from the bundle with the
prefetch, then bench.yml in parallel against vLLM-Omni 0.30 and pause-gemma against 0.18. These
two runs are the suite's happy path on SSH hosts; the tests read what the rehearsal left: its
report's raw facts, the run directories it collected, the branch it pushed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench_py import documents
from bench_py.standins import rehearsal_inventory
from bench_py.standins.rehearsal_hosts import PANDA, TITAN
from bench_py.standins.rehearsal_playbooks import RUNS, TITAN_MOUNTS
from tests.helpers import ROOT

# The rehearsal is one command of several minutes: the module's first test waits for all of it.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rehearsal")
    process = subprocess.Popen(
        ["make", "rehearsal", f"REHEARSAL_ARGS=--workdir {workdir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    try:
        stdout, stderr = process.communicate(timeout=1400)
    except subprocess.TimeoutExpired:  # SIGTERM to the group: the rehearsal tears down, then reports
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    print(result.stderr[-6000:])
    report = json.loads((workdir / "rehearsal.json").read_text())
    return {"result": result, "report": report, "workdir": workdir}


def test_make_rehearsal_passes_and_prints_its_time(rehearsal):
    result, report = rehearsal["result"], rehearsal["report"]
    assert result.returncode == 0 and report["passed"], report["failures"]
    assert re.search(r"^rehearsal passed in \d+ s", result.stderr, re.MULTILINE)
    runs = ", ".join(f"{run['gemma_mode']} {run['seconds']:.0f} s" for run in report["runs"])
    print(f"\nmake rehearsal: {report['seconds']:.0f} s (setup.yml {report['setup_s']:.0f} s; runs: {runs})")


def test_the_inventory_is_titan_example_but_for_the_allow_list(rehearsal):
    diff = [tuple(row) for row in rehearsal["report"]["inventory_diff"]]
    print("\n" + rehearsal_inventory.render_diff(diff))
    assert rehearsal_inventory.outside_allow_list(diff) == []
    changed = {key for key, _, _ in diff}
    assert "gpu_hosts.voxbench_inventory_config.allow_standin_engines" in changed
    assert "gpu_hosts.voxbench_inventory_config.incumbent.url" in changed
    # Beside the inventory, the runs are given sizes (the fast profile) and where to put results.
    bench_vars = [v for k, v in rehearsal["report"]["extra_vars"].items() if k.startswith("bench.yml")]
    assert bench_vars and all(set(v["voxbench_config"]) == {"profile", "candidate"} for v in bench_vars)


def test_titan_runs_voxbench_from_its_own_venv_and_imports_all_it_can_reach(rehearsal):
    titan = rehearsal["report"]["titan"]
    assert titan["closure"]["returncode"] == 0, titan["closure"]["output"]
    assert "the scorer runs here" in titan["closure"]["output"]  # resemblyzer loaded and run, as the bench user
    imported = titan["imported_from"]
    assert set(imported) == {"bench_py", "resemblyzer", "torch"}
    assert all(path.startswith("/opt/voxbench/venv/") for path in imported.values()), imported
    # The SSH key the rehearsal made lives in its workdir; nothing else may come from there or the project.
    sources = [m["source"] for m in titan["mounts"] if m["destination"] != "/home/bench/.ssh/authorized_keys"]
    workdir = str(rehearsal["workdir"])
    assert not any(s.startswith((str(ROOT), workdir, "/opt/voxbench")) or "bench_py" in s for s in sources), sources
    assert {mount["destination"] for mount in titan["mounts"]} <= TITAN_MOUNTS


@pytest.mark.parametrize(("gemma_mode", "release"), RUNS)
def test_both_runs_end_done_as_production_would(rehearsal, gemma_mode, release):
    (run,) = [r for r in rehearsal["report"]["runs"] if r["gemma_mode"] == gemma_mode]
    assert run["release"] == release and run["problems"] == []
    run_dir = Path(run["run_dir"])
    m = documents.read("measurements", run_dir / "measurements.json")
    assert m["final_state"] == "DONE", m["reason"]
    selected = next(p for p in m["install_paths"]["paths"] if p["status"] == "ok")
    assert selected["install_path"] == "2A" and selected["launch"]["engine_version"] == release
    assert selected["preset_voice"]["name"] == "neutral_female"  # titan.example's, listed by the engine
    probe = selected["cloning_probe"]
    engine_after = "kept serving" if release == "0.30.0" else "exited"
    assert probe["outcome"] == f"answered HTTP 400; the engine {engine_after}"
    assert selected["cloning"] == "preset_substitute" and selected["substitute_voice"] in selected["voices"]
    scores = selected["preset_sweep"]["scores"]
    assert len(scores) == len(selected["voices"]) and all(s is not None for s in scores.values())  # on titan
    assert m["host"]["name"] == TITAN
    incumbent = [r for r in m["bench"]["records"]["incumbent"] if not r["warmup"]]
    assert incumbent and all(r["ok"] and r["rate_source"] == "headers" for r in incumbent)  # panda, over the net
    assert m["incumbent"]["url"] == f"http://{PANDA}:8772/tts"
    assert m["teardown"]["removal"]["verified"] and m["teardown"]["postflight"]["ok"]
    if gemma_mode == "pause-gemma":
        assert m["teardown"]["cotenant_restore"]["ok"] and m["teardown"]["postflight"]["ratio"] <= 1.2
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert (verdict["verdict"], verdict["reason"]) == ("keep_chatterbox", "cloning_unsupported")


def test_gemma_answers_after_both_runs_and_the_token_is_nowhere(rehearsal):
    gemma = rehearsal["report"]["gemma_after"]
    assert gemma["status"] == "running" and gemma["answers"], gemma
    assert rehearsal["report"]["token_found_in"] == []


def test_both_branches_were_pushed_sealed(rehearsal):
    """Before anyone listens, a branch holds only what the blind test allows: no takes under their
    sides' names, no per-side proxies, no scores, the measurements as a sealed view."""
    origin = rehearsal["workdir"] / "artifacts" / "origin.git"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(origin), *args], capture_output=True, text=True, check=True).stdout

    branches = git("branch", "--list", "--format=%(refname:short)", "voxtral-bench-*").split()
    assert len(branches) == len(RUNS)
    for branch in branches:
        names = git("ls-tree", "-r", "--name-only", branch).split()
        assert any(name.endswith("/scoring/session.json") for name in names), names
        assert not [n for n in names if "/wavs/" in n or n.endswith(("proxies.json", "scores.jsonl"))], names
        (measurements,) = [n for n in names if n.endswith("/measurements.json")]
        assert json.loads(git("show", f"{branch}:{measurements}")).get("sealed_view")


def test_host_keys_are_checked_against_the_known_hosts_the_rehearsal_wrote(rehearsal):
    check = rehearsal["report"]["host_key_check"]
    assert check["refused"] and "Host key verification failed" in check["output"], check["output"]
