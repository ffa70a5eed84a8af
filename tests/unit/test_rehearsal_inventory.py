"""The rehearsal's inventory is inventory/titan.example but for the written allow-list."""

from __future__ import annotations

import shutil

import yaml

from bench_py.standins import rehearsal_inventory as ri
from tests.helpers import ROOT

EXAMPLE = ROOT / "inventory" / "titan.example"


def generated(tmp_path):
    hosts = {"titan": {"ansible_host": "127.0.0.1", "ansible_port": 2201}, "panda": {"ansible_port": 2202}}
    hosts["panda"]["ansible_host"] = "127.0.0.1"
    return ri.generate(
        EXAMPLE, tmp_path / "inv", hosts, tmp_path / "key", tmp_path / "known_hosts",
        image="voxbench/standin-vllm-omni:0.30.0", network_mode="container:titan",
        cotenant_container="voxbench-rehearsal-gemma", incumbent_url="http://panda:8772/tts",
    )  # fmt: skip


def test_the_generated_inventory_differs_only_on_the_allow_list(tmp_path):
    diff = ri.inventory_diff(ri.load(EXAMPLE), ri.load(generated(tmp_path)))
    assert diff and ri.outside_allow_list(diff) == []
    assert {key for key, _, _ in diff} >= {
        "hosts.titan.ansible_port",
        "hosts.vars.ansible_ssh_common_args",
        "gpu_hosts.voxbench_inventory_config.allow_standin_engines",
    }


def test_any_other_change_is_named(tmp_path):
    target = generated(tmp_path)
    group_vars = target / "group_vars" / "gpu_hosts.yml"
    data = yaml.safe_load(group_vars.read_text())
    data["voxbench_inventory_config"]["reference"]["name"] = "default"
    data["voxbench_inventory_config"]["candidate"]["launch"] = {"memory_budget_gb": 1}
    group_vars.write_text(yaml.safe_dump(data))
    outside = ri.outside_allow_list(ri.inventory_diff(ri.load(EXAMPLE), ri.load(target)))
    assert [key for key, _, _ in outside] == [
        "gpu_hosts.voxbench_inventory_config.candidate.launch.memory_budget_gb",
        "gpu_hosts.voxbench_inventory_config.reference.name",
    ]
    assert "NOT ON THE ALLOW-LIST" in ri.render_diff(outside)


def test_a_file_the_example_gains_is_carried_over_and_compared(tmp_path):
    example = tmp_path / "example"
    shutil.copytree(EXAMPLE, example)
    (example / "group_vars" / "all.yml").write_text("voxbench_watcher_poll_s: 5\n")
    target = ri.generate(
        example, tmp_path / "inv", {"titan": {"ansible_port": 1}, "panda": {"ansible_port": 2}},
        tmp_path / "key", tmp_path / "known_hosts", image="i", network_mode="container:titan",
        cotenant_container="g", incumbent_url="http://panda:8772/tts",
    )  # fmt: skip
    assert (target / "group_vars" / "all.yml").read_text() == "voxbench_watcher_poll_s: 5\n"
    (target / "group_vars" / "all.yml").write_text("voxbench_watcher_poll_s: 1\n")
    outside = ri.outside_allow_list(ri.inventory_diff(ri.load(example), ri.load(target)))
    assert [key for key, _, _ in outside] == ["group_vars/all.yml.voxbench_watcher_poll_s"]
