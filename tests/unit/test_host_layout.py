"""Where voxbench lives on a GPU host is written once (group_vars/all.yml): setup.yml installs
there and bench.yml, through the example inventory, runs from there. Both sides are resolved here
by Ansible itself for the example's GPU host, and must agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT

BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "inventory" / "titan.example"
BENCH_SIDE = {
    "python": "{{ voxbench_launcher_python }}",
    "project": "{{ voxbench_launcher_project_dir }}",
    "state_dir": "{{ voxbench_inventory_config.paths.state_dir }}",
    "token_file": "{{ voxbench_inventory_config.paths.token_file }}",
    "references": "{{ voxbench_inventory_config.reference.dir }}",
}


def setup_side() -> dict[str, str]:
    """The host-path inputs setup.yml gives its roles (templates, resolved by the caller)."""
    plays = yaml.safe_load((ROOT / "setup.yml").read_text())
    play = next(p for p in plays if p["hosts"] == "gpu_hosts")
    return {name: value for role in play["roles"] for name, value in (role.get("vars") or {}).items()}


def resolved(extra: dict[str, Any] | None = None, inventory: Path = EXAMPLE) -> dict[str, dict[str, str]]:
    """Both sides, templated by Ansible for the example's GPU host (the debug action connects to nothing)."""
    message = json.dumps({"msg": {"bench": BENCH_SIDE, "setup": setup_side()}})
    command = [str(BIN / "ansible"), "titan", "-i", str(inventory), "--playbook-dir", str(ROOT)]
    command += ["-m", "ansible.builtin.debug", "-a", message, *(["-e", json.dumps(extra)] if extra else [])]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    head, _, answer = done.stdout.partition("=>")  # titan | SUCCESS => {...}
    assert head.strip() == "titan | SUCCESS", done.stdout
    result: dict[str, dict[str, str]] = json.loads(answer)["msg"]
    return result


def agree(sides: dict[str, dict[str, str]]) -> None:
    bench, setup = sides["bench"], sides["setup"]
    assert bench["python"] == f"{setup['voxbench_runtime_venv']}/bin/python"
    assert setup["voxbench_cleanup_venv"] == setup["voxbench_runtime_venv"]
    assert setup["voxbench_prefetch_voxbench"] == f"{setup['voxbench_runtime_venv']}/bin/voxbench"
    assert bench["project"] == setup["voxbench_runtime_project_link"]
    assert bench["references"] == f"{setup['voxbench_runtime_project_link']}/voice-references"
    assert bench["state_dir"] == setup["voxbench_runtime_state_dir"] == setup["voxbench_cleanup_state_dir"]
    assert bench["token_file"] == f"{setup['voxbench_runtime_secrets_dir']}/hf_token"


def test_setup_installs_where_bench_runs_from():
    sides = resolved()
    agree(sides)
    assert sides["bench"]["python"] == "/opt/voxbench/venv/bin/python"
    assert sides["bench"]["state_dir"] == "/var/lib/voxbench"


def test_one_override_moves_both_sides():
    sides = resolved({"voxbench_host_root": "/srv/vb", "voxbench_host_state_dir": "/srv/vb-state"})
    agree(sides)
    assert sides["bench"]["python"] == "/srv/vb/venv/bin/python"
    assert sides["bench"]["token_file"] == "/srv/vb-state/secrets/hf_token"


def test_the_inventory_moves_both_sides_where_the_docs_say(tmp_path):
    """docs/setup.md: set voxbench_host_* in the inventory's group_vars/gpu_hosts.yml (group_vars/all.yml
    beside the playbooks outranks an inventory's group_vars/all.yml, so that one would not do)."""
    import shutil

    inventory = tmp_path / "titan"
    shutil.copytree(EXAMPLE, inventory)
    with (inventory / "group_vars" / "gpu_hosts.yml").open("a") as handle:
        handle.write("\nvoxbench_host_root: /srv/vb\nvoxbench_host_state_dir: /srv/vb-state\n")
    sides = resolved(inventory=inventory)
    agree(sides)
    assert sides["bench"]["python"] == "/srv/vb/venv/bin/python"
    assert sides["setup"]["voxbench_cleanup_state_dir"] == "/srv/vb-state"


def test_no_playbook_or_inventory_writes_a_host_path_of_its_own():
    written = [ROOT / "setup.yml", ROOT / "bench.yml", *sorted((ROOT / "inventory").rglob("*.yml"))]
    for path in written:
        text = path.read_text()
        assert "/opt/voxbench" not in text and "/var/lib/voxbench" not in text, path


def test_setup_makes_the_boot_marker_directory_where_runs_look_for_it():
    from bench_py.run.state import BOOT_MARKER_DIR

    defaults = yaml.safe_load((ROOT / "roles" / "voxbench_runtime" / "defaults" / "main.yml").read_text())
    assert defaults["voxbench_runtime_boot_dir"] == str(BOOT_MARKER_DIR)
