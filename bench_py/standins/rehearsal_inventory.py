"""The rehearsal's inventory: ``inventory/titan.example`` as a user fills it, changed only where
this machine's test hosts must differ from a real titan and panda — and only in keys on one
written allow-list, so that what the rehearsal proves is what the example ships.

:func:`inventory_diff` flattens both inventories into dotted keys and lists every difference;
:func:`outside_allow_list` is what a test (and ``make rehearsal``) fails on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

#: Every key the rehearsal may set differently from inventory/titan.example, and what kind of
#: difference it is. Addresses, ports, image and container names, ssh settings, and the flag that
#: lets stand-ins play the engines: nothing that changes what a run does.
ALLOW_LIST: dict[str, str] = {
    "hosts.titan.ansible_host": "address",
    "hosts.titan.ansible_port": "port",
    "hosts.panda.ansible_host": "address",
    "hosts.panda.ansible_port": "port",
    "hosts.vars.ansible_ssh_private_key_file": "ssh key",
    "hosts.vars.ansible_ssh_common_args": "ssh known_hosts (host keys checked against the file the rehearsal writes)",
    "gpu_hosts.voxbench_inventory_config.allow_standin_engines": "the stand-ins play the engines",
    "gpu_hosts.voxbench_inventory_config.candidate.image": "image name",
    # The test host shares this machine's Docker daemon: its engines join its network namespace.
    "gpu_hosts.voxbench_inventory_config.candidate.network_mode": "address",
    "gpu_hosts.voxbench_inventory_config.cotenant.control.name": "container name",
    "gpu_hosts.voxbench_inventory_config.incumbent.url": "address",
}


def _flatten(data: Any, prefix: str) -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat or {prefix: {}}
    return {prefix: data}


def _hosts(data: dict[str, Any]) -> dict[str, Any]:
    """hosts.yml, keyed by host (whatever its group) plus the shared vars."""
    out: dict[str, Any] = {"vars": dict((data.get("all") or {}).get("vars") or {})}
    for group in ((data.get("all") or {}).get("children") or {}).values():
        for name, host in ((group or {}).get("hosts") or {}).items():
            out[name] = dict(host or {})
    return out


def load(directory: Path) -> dict[str, Any]:
    """An inventory directory as the rehearsal compares it: hosts, the GPU hosts' group vars, and
    every other YAML file in it under its relative path (a file added to the example later is
    compared too)."""
    data: dict[str, Any] = {
        "hosts": _hosts(yaml.safe_load((directory / "hosts.yml").read_text())),
        "gpu_hosts": yaml.safe_load((directory / "group_vars" / "gpu_hosts.yml").read_text()),
    }
    for path in sorted(directory.rglob("*.yml")):
        relative = str(path.relative_to(directory))
        if relative not in ("hosts.yml", "group_vars/gpu_hosts.yml"):
            data[relative] = yaml.safe_load(path.read_text())
    return data


def inventory_diff(example: dict[str, Any], generated: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, the example's value, the rehearsal's value) for every key that differs."""
    left, right = _flatten(example, ""), _flatten(generated, "")
    # An empty mapping on one side that the other fills is not a difference of its own.
    keys = set(left) | set(right)
    for flat in (left, right):
        for key in [k for k, v in flat.items() if v == {} and any(o.startswith(f"{k}.") for o in keys)]:
            del flat[key]
    return [
        (key, left.get(key), right.get(key))
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def outside_allow_list(diff: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [row for row in diff if row[0] not in ALLOW_LIST]


def render_diff(diff: list[tuple[str, Any, Any]]) -> str:
    lines = []
    for key, was, now in diff:
        kind = ALLOW_LIST.get(key, "NOT ON THE ALLOW-LIST")
        lines.append(f"  {key}: {was!r} -> {now!r}  [{kind}]")
    return "\n".join(lines) or "  (no difference)"


def generate(
    example_dir: Path,
    target: Path,
    hosts: dict[str, dict[str, Any]],
    private_key: Path,
    known_hosts: Path,
    image: str,
    network_mode: str,
    cotenant_container: str,
    incumbent_url: str,
) -> Path:
    """Write the rehearsal's inventory into ``target``: the example, and only allow-listed changes.

    ``hosts``: per host name (``titan``, ``panda``), its ``ansible_host`` and ``ansible_port``."""
    shutil.rmtree(target, ignore_errors=True)  # nothing of an earlier rehearsal's inventory stays
    shutil.copytree(example_dir, target)
    raw_hosts = yaml.safe_load((example_dir / "hosts.yml").read_text())
    for group in raw_hosts["all"]["children"].values():
        for name, host in group["hosts"].items():
            host.update(hosts[name])
    raw_hosts["all"]["vars"] = {
        "ansible_ssh_private_key_file": str(private_key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes",
    }
    group_vars = yaml.safe_load((example_dir / "group_vars" / "gpu_hosts.yml").read_text())
    config = group_vars["voxbench_inventory_config"]
    config["allow_standin_engines"] = True
    config["candidate"]["image"] = image
    config["candidate"]["network_mode"] = network_mode
    config["cotenant"]["control"]["name"] = cotenant_container
    config["incumbent"]["url"] = incumbent_url
    (target / "hosts.yml").write_text(yaml.safe_dump(raw_hosts, sort_keys=False))
    (target / "group_vars" / "gpu_hosts.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
    return target
