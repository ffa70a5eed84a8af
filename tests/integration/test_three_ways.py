"""ansible-playbook, the voxbench CLI and the Python API agree on the embedded default (fast)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest

from bench_py import api, documents
from tests.helpers import ROOT, bench_containers
from tests.integration.conftest import score_by_mapping

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}


def with_scores(run_dir: Path, tmp: Path) -> Path:
    """A copy of the run scored blind by five listeners, then closed by the operator: ten cloned
    answers per side, the candidate better by 0.4, short of the rule's 0.5, so the verdict is
    keep_chatterbox (row 8) whatever TTFA each run measured, and three separate runs must agree."""
    from bench_py.judge import session as sessions

    copy = tmp / run_dir.name
    shutil.copytree(run_dir, copy)
    given: dict[str, int] = {}

    def score(_who: str, entry: dict) -> int:
        key = f"{entry['side']}-{entry['condition']}"
        given[key] = given.get(key, 0) + 1
        return 4 if key == "candidate-cloned" and given[key] <= 4 else 3

    score_by_mapping(copy, [f"l{n}" for n in range(5)], score)
    sessions.reveal(sessions.load(copy), by="operator")
    return copy


def test_the_three_ways_agree(finished_run, bench_env, tmp_path, docker_client):
    # 1. ansible-playbook: the shared finished run (bench.yml), then report.yml on it.
    ansible_run = with_scores(finished_run["run_dir"], tmp_path / "a")
    report = subprocess.run(
        [str(BIN / "ansible-playbook"), "report.yml", "-e", f"run_dir={ansible_run}"],
        cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout[-2000:]
    by_ansible = documents.read("verdict", ansible_run / "verdict.json")
    # 2. The CLI: voxbench bench --json (schema-valid), then voxbench report --json.
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({**bench_env["config"], "profile": "fast"}))
    variables = [f"--var={k}={json.dumps(v)}" for k, v in bench_env["extra"].items()]
    cli = subprocess.run(
        [str(BIN / "voxbench"), "bench", "--gemma-mode", "parallel", "--config", str(config), "--json", *variables],
        cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    output = json.loads(cli.stdout)
    jsonschema.validate(output, documents.schema("cli-bench"))
    cli_run = with_scores(Path(output["figures"]["run_dir"]), tmp_path / "c")
    recomputed = subprocess.run(
        [str(BIN / "voxbench"), "report", str(cli_run), "--json"], capture_output=True, text=True
    )
    assert recomputed.returncode == 0, recomputed.stderr
    by_cli = json.loads(recomputed.stdout)
    # 3. Python: api.bench, then api.report.
    shutil.rmtree(bench_env["tmp"] / "runs")
    result = api.bench("parallel", config={**bench_env["config"], "profile": "fast"}, extra_vars=bench_env["extra"],
                       private_data_dir=str(tmp_path / "runner"))  # fmt: skip
    assert result.final_state == "DONE"
    # Each module's result is in its runner_on_ok event's ansible_facts (what any program reading events sees).
    facts = {
        event["event_data"]["task_action"]: event["event_data"]["res"]["ansible_facts"]
        for event in result.events
        if event.get("event") == "runner_on_ok" and (event["event_data"].get("res") or {}).get("ansible_facts")
    }
    assert facts["voxbench_launch"]["voxbench_run"]["run_id"] == result.run_id
    assert facts["voxbench_results"]["voxbench_results"]["final_state"] == "DONE"
    api_run = with_scores(Path(result.figures["run_dir"]), tmp_path / "p")
    by_api = api.report(api_run).verdict_detail
    # The same utterance ids, rule, rule inputs from the scores, and verdict, whichever way.
    utterances = {
        json.dumps(documents.read("measurements", r / "measurements.json")["bench"]["utterances"])
        for r in (ansible_run, cli_run, api_run)
    }
    assert len(utterances) == 1
    for verdict in (by_ansible, by_cli, by_api):
        assert (verdict["verdict"], verdict["row"]) == ("keep_chatterbox", 8)
        assert verdict["evidence"]["means"] == {"candidate": 3.4, "incumbent": 3.0}
        assert verdict["rule_sha256"] == by_ansible["rule_sha256"]
        assert verdict["statistics"]["n"] == {"candidate": 10, "incumbent": 10}
    assert bench_containers(docker_client) == []


def test_an_api_cancel_is_an_operator_abort(bench_env, tmp_path, docker_client):
    benching = threading.Event()

    def watch(event: dict) -> None:
        data = event.get("event_data", {})
        if data.get("task_action") == "voxbench_state" and (data.get("res") or {}).get("state") == "BENCHING":
            benching.set()

    with pytest.raises(api.Cancelled, match=r"abort\.yml ended successful"):
        api.bench(
            "parallel",
            config={**bench_env["config"], "profile": "full"},
            extra_vars=bench_env["extra"],
            event_handler=watch,
            cancel_callback=benching.is_set,
            private_data_dir=str(tmp_path / "runner"),
        )
    (run_dir,) = (bench_env["tmp"] / "state" / "runs").iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["state"] == "ERROR_ABORTED" and "operator" in state["reason"]
    assert bench_containers(docker_client) == []
    statuses = api.status(config=bench_env["config"])
    assert statuses["localhost"]["holder"] is None
    assert statuses["localhost"]["runs"][0]["state"] == "ERROR_ABORTED"
    jsonschema.validate({"schema": "voxbench/cli-status/v0", "hosts": statuses}, documents.schema("cli-status"))


def test_a_configuration_error_names_the_bad_key(bench_env, tmp_path):
    with pytest.raises(api.VoxbenchError, match=r"bench\.repetitons: unknown key"):
        api.bench("parallel", config={"bench": {"repetitons": 2}}, extra_vars=bench_env["extra"],
                  private_data_dir=str(tmp_path / "runner"))  # fmt: skip
