"""Production first: `voxbench plan` on the real inventory shape, `voxbench prefetch` through the
Hugging Face Hub's own API, and no stand-in ever passing for the candidate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from bench_py.api import plan as make_plans
from bench_py.config.model import deep_merge, load
from bench_py.plan import make_plan
from bench_py.run.measurements import read_measurements
from bench_py.run.preflight import check_weights
from tests.helpers import ROOT, bench_containers, free_port, running_command
from tests.integration.test_pipeline import playbook

BIN = Path(sys.executable).parent
TITAN = ROOT / "inventory" / "titan.example"
HUB_TOKEN = "hf_HUB_CANARY_6b1f0e2c"


def titan_overrides() -> dict:
    return yaml.safe_load((TITAN / "group_vars" / "gpu_hosts.yml").read_text())["voxbench_inventory_config"]


def test_the_titan_example_plans_and_passes():
    """Its hosts do not exist here: the plan is what the configuration alone says, and it passes."""
    result = subprocess.run(
        [str(BIN / "voxbench"), "plan", "-i", str(TITAN)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "titan: not reached" in out
    assert "2A container  vllm-omni:0.18-aarch64  entrypoint ['vllm-omni']" in out
    assert "/var/lib/voxbench/secrets/hf_token -> /run/secrets/hf_token (ro)" in out and "ipc None  shm 16g" in out
    assert "launch vLLM-Omni 0.18: vllm-omni serve mistralai/Voxtral-4B-TTS-2603 --omni" in out
    assert "--stage-configs-path" in out and "--stage-overrides" in out
    assert "co-tenant http://127.0.0.1:8003/v1/chat/completions (parallel)" in out
    assert '"reference_audio": "voice-references/samantha.wav"' in out and '"cfg_weight": 0.3' in out
    assert "FAIL" not in out and "plan passes" in out


@pytest.fixture
def one_stage(tmp_path) -> str:
    path = tmp_path / "voxtral_tts.yaml"
    path.write_text(yaml.safe_dump({"stage_args": [{"stage_id": 0, "engine_args": {"gpu_memory_utilization": 0.8}}]}))
    return str(path)


@pytest.mark.parametrize(
    ("fact", "override", "named"),
    [
        ("one-stage config", {"candidate": {"launch": {"stage_config_template": "ONE_STAGE"}}}, "has 1 stage(s)"),
        ("1 GB budget", {"candidate": {"launch": {"memory_budget_gb": 1}}}, "memory_budget_gb 1 GB cannot hold"),
        (
            "stand-in version command",
            {"candidate": {"launch": {"version_command": ["python3", "-m", "bench_py.standins.tts_server", "-V"]}}},
            "exits non-zero in the real vLLM-Omni image",
        ),
        ("plain vLLM", {"candidate": {"command": ["vllm-omni", "serve", "m", "--port", "8091"]}}, "has no --omni"),
        ("2 minute ready timeout", {"candidate": {"ready_timeout_s": 120}}, "cannot hold a vLLM-Omni start"),
        ("no HF cache mount", {"candidate": {"hf_cache_dir": None}}, "hf_cache_dir is not set"),
    ],
)
def test_each_broken_fact_is_named(fact, override, named, one_stage):
    overrides = deep_merge(titan_overrides(), json.loads(json.dumps(override).replace("ONE_STAGE", one_stage)))
    plan = make_plan(load({"gemma_mode": "parallel", **overrides}))
    failed = [c["message"] for c in plan["checks"] if c["ok"] is False]
    assert not plan["ok"] and any(named in message for message in failed), (fact, failed)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A gated Hub repository of Voxtral's shape on loopback (bench_py.standins.hf_hub)."""
    folder = tmp_path_factory.mktemp("hub")
    (folder / "token").write_text(HUB_TOKEN + "\n")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench_py.standins.hf_hub",
        "--port",
        str(port),
        "--token-file",
        str(folder / "token"),
    ]
    with running_command(argv, port, folder) as (url, _):
        yield url


def prefetch(hub_url: str, cache: Path, token: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "voxbench"),
            "prefetch",
            "--endpoint",
            hub_url,
            "--cache-dir",
            str(cache),
            "--token-file",
            str(token),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_prefetch_fills_the_cache_through_the_hubs_api_and_2c_then_says_transformers_cannot(hub, tmp_path):
    token = tmp_path / "hf_token"
    token.write_text("hf_WRONG\n")
    token.chmod(0o600)
    refused = prefetch(hub, tmp_path / "cache", token)
    assert refused.returncode != 0 and "is gated: accept its terms" in refused.stderr
    token.write_text(HUB_TOKEN + "\n")
    config = load({"gemma_mode": "parallel", "candidate": {"hf_cache_dir": str(tmp_path / "cache")}})
    assert check_weights(config).ok is False  # before: PREFLIGHT refuses, naming the command
    done = prefetch(hub, tmp_path / "cache", token)
    assert done.returncode == 0, done.stderr
    assert "mistralai/Voxtral-4B-TTS-2603: 24 files" in done.stdout and "24 downloaded now" in done.stdout
    asked = httpx.get(f"{hub}/voxbench/requests").json()
    assert asked and all(request["auth"] == "bearer" for request in asked[-25:])  # the token went as a header ...
    assert HUB_TOKEN not in json.dumps(asked)
    again = prefetch(hub, tmp_path / "cache", token)
    assert "0 downloaded now" in again.stdout  # ... once: a second prefetch finds everything there
    for run in (refused, done, again):  # ... and never into what prefetch says or leaves behind
        assert HUB_TOKEN not in run.stdout + run.stderr
    for path in (tmp_path / "cache").rglob("*"):
        assert not path.is_file() or HUB_TOKEN.encode() not in path.read_bytes(), path
    weights = check_weights(config)
    assert weights.ok and "24 files" in weights.message and weights.detail["complete"] == "prefetch manifest"
    # A download cut short: a file not yet fetched, a blob still .incomplete; both are named.
    model_dir = tmp_path / "cache" / "hub" / "models--mistralai--Voxtral-4B-TTS-2603"
    (snapshot,) = (model_dir / "snapshots").iterdir()
    (snapshot / "tekken.json").unlink()
    (model_dir / "blobs" / "0123abcd.incomplete").write_bytes(b"half")
    cut = check_weights(config)
    assert not cut.ok and "was cut short (blobs/0123abcd.incomplete, tekken.json missing)" in cut.message
    (model_dir / "blobs" / "0123abcd.incomplete").unlink()
    assert "1 downloaded now" in prefetch(hub, tmp_path / "cache", token).stdout and check_weights(config).ok
    from bench_py.engines import inprocess

    with pytest.raises(inprocess.LoadError) as error:  # 2C: transformers' own word on a Mistral-format checkpoint
        inprocess.load("transformers", None, "mistralai/Voxtral-4B-TTS-2603", str(tmp_path / "cache"))
    assert error.value.status == "unsupported" and "model_type" in str(error.value)


@pytest.mark.docker
def test_the_co_tenant_port_is_checked_on_the_host(hub, tmp_path, standin_images):
    """bench.yml --check on a host it can reach (this one, by a local connection), from an inventory
    made of titan.example: the plan reads the host's facts. Gemma's port passes; 8000 is named."""
    cotenant_port = free_port()
    cotenant = [sys.executable, "-m", "bench_py.standins.cotenant_server", "--port", str(cotenant_port)]
    token = tmp_path / "hf_token"
    token.write_text(HUB_TOKEN + "\n")
    token.chmod(0o600)
    assert prefetch(hub, tmp_path / "cache", token).returncode == 0
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {"titan": {"ansible_connection": "local"}}}}}})
    )
    group_vars = yaml.safe_load((TITAN / "group_vars" / "gpu_hosts.yml").read_text())
    here = {
        "ansible_python_interpreter": sys.executable,
        "voxbench_launcher_project_dir": str(ROOT),
        "voxbench_launcher_python": sys.executable,
    }
    local = {
        "allow_standin_engines": True,
        "paths": {"state_dir": str(tmp_path / "state"), "token_file": str(token)},
        "candidate": {
            "image": "voxbench/standin-vllm-omni:0.18.0",
            "port": free_port(),
            "hf_cache_dir": str(tmp_path / "cache"),
        },
        "cotenant": {"url": f"http://127.0.0.1:{cotenant_port}/v1/chat/completions"},
    }

    def plan_with(config: dict):
        vars_ = {
            **group_vars,
            **here,
            "voxbench_inventory_config": deep_merge(group_vars["voxbench_inventory_config"], config),
        }
        (inventory / "group_vars" / "gpu_hosts.yml").write_text(yaml.safe_dump(vars_))
        (host_plan,) = make_plans("parallel", inventory=str(inventory))
        return host_plan

    with running_command(cotenant, cotenant_port, tmp_path):
        good = plan_with(local)
        assert good.facts_read and good.ok, good.text
        assert "[ok  ] cotenant: the co-tenant answers" in good.text and "[ok  ] image:" in good.text
        assert "memory min(cap 24 GB, MemAvailable" in good.text
        with __import__("socket").socket() as probe:
            assert probe.connect_ex(("127.0.0.1", 8000)) != 0  # nothing answers on 8000 here
        wrong = plan_with(deep_merge(local, {"cotenant": {"url": "http://127.0.0.1:8000/v1/chat/completions"}}))
    assert wrong.facts_read and not wrong.ok
    assert "[FAIL] cotenant: nothing answers as a chat server at http://127.0.0.1:8000" in wrong.text
    assert not (tmp_path / "state" / "runs").exists() or not any((tmp_path / "state" / "runs").iterdir())  # nothing ran


@pytest.mark.docker
def test_without_the_flag_a_run_with_only_standins_ends_at_preflight_with_every_path_blocked(bench_env, docker_client):
    result = playbook(bench_env, "-e", "gemma_mode=parallel", config={"allow_standin_engines": False})
    assert result.returncode != 0
    (run_dir,) = (bench_env["tmp"] / "runs").iterdir()
    m = read_measurements(run_dir / "measurements.json")
    assert m["final_state"] == "ERROR_ABORTED" and [h["to"] for h in m["history"]] == ["PREFLIGHT", "ERROR_ABORTED"]
    paths = {p["install_path"]: p for p in m["install_paths"]["paths"]}
    assert set(paths) == {"2A", "2B", "2C", "2D"} and {p["status"] for p in paths.values()} == {"blocked"}
    assert "io.voxbench.standin=candidate" in paths["2A"]["reason"] and "espeak-ng loader" in paths["2C"]["reason"]
    assert all("allow_standin_engines" in p["reason"] for p in paths.values())
    assert m["bench"] is None and m["teardown"] is None  # never with figures
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "inconclusive" and verdict["row"] == 1
    assert "every install path runs a voxbench stand-in" in m["reason"]
    assert bench_containers(docker_client) == []
