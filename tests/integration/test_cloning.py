"""An engine that cannot clone: the probe finds out safely, the engine is restarted, the closest
preset stands in for the cloned condition, and the verdict can only keep the incumbent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_py.config.model import default_config
from bench_py.run import files
from tests.helpers import ROOT, bench_containers

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent


def test_a_candidate_that_crashes_on_ref_audio_gets_a_preset_substitute(bench_env, docker_client):
    # The same engine also logs an NVRTC kernel error (as on GB10): one run shows both traps.
    command = [*default_config()["candidate"]["command"], "--clone-crash", "--nvrtc-error"]
    variables = {
        **bench_env["extra"],
        "voxbench_config": {"profile": "fast", **bench_env["config"],
                            "candidate": {**bench_env["config"]["candidate"], "command": command,
                                          "install_paths": ["2A"]}},
    }  # fmt: skip
    (bench_env["tmp"] / "vars.json").write_text(json.dumps(variables))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "bench.yml", "-e", f"@{bench_env['tmp'] / 'vars.json'}",
         "-e", "gemma_mode=parallel"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    (run_dir,) = (bench_env["tmp"] / "runs").iterdir()
    m = files.read("measurements", run_dir / "measurements.json")
    (path,) = m["install_paths"]["paths"]
    probe = path["cloning_probe"]
    assert probe["supported"] is False and probe["restarted"] is True and probe["engine_state_after"] == "exited"
    assert any("audio encoder" in line for line in probe["evidence"])  # the engine's own words
    sweep = path["preset_sweep"]
    assert set(sweep["scores"]) == {"en-us", "en-us+f1", "en-us+f3", "en-us+f4", "en-us+m3", "en-us+m7"}
    assert sweep["chosen"] == max(sweep["scores"], key=lambda v: sweep["scores"][v]) == path["substitute_voice"]
    assert all((run_dir / "preset-sweep" / f"{voice}.wav").is_file() for voice in sweep["scores"])
    cloned = [r for r in m["bench"]["records"]["candidate"] if r["condition"] == "cloned" and not r["warmup"]]
    assert cloned and all(r["ok"] for r in cloned)  # the substitute spoke; the engine did not crash again
    verdict = files.read("verdict", run_dir / "verdict.json")
    assert (verdict["verdict"], verdict["row"], verdict["reason"]) == ("keep_chatterbox", 5, "cloning_unsupported")
    assert bench_containers(docker_client) == []
    kernel = m["teardown"]["kernel_errors"]
    assert kernel["file"] == "voxtral_nvrtc_diagnostic.log" and kernel["errors"] >= 1
    report = (run_dir / kernel["file"]).read_text()
    assert "RuntimeError: nvrtc: error" in report and "operation: istft" in report and "torch" in report
    assert all((run_dir / name).is_file() for name in m["teardown"]["engine_logs"])  # engine logs kept
