#!/usr/bin/python
"""Build (or reuse) the offline bundle for a host's platform, on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_bundle
short_description: Build the wheelhouse + project bundle setup.yml installs on a host
description:
  - On the controller, builds C(bench_py) as a wheel, downloads every runtime dependency for the
    host's Python version and architecture, and packs them with this project's playbooks, roles,
    modules and reference clips into one deterministic tar file. Cached by the sources' digest and
    the platform, so an unchanged project reuses the same file (and copying it changes nothing).
options:
  project_dir:
    description: The project checkout on the controller.
    type: path
    required: true
  cache_dir:
    description: Where bundles are kept on the controller.
    type: path
    required: true
  python_version:
    description: The host's Python, C(major.minor).
    type: str
    required: true
  machine:
    description: The host's architecture.
    type: str
    required: true
    choices: [x86_64, aarch64]
  glibc:
    description: The host's glibc version, C(2.N).
    type: str
    required: true
  constraints:
    description: A pip constraints file pinning the dependency versions.
    type: path
attributes:
  check_mode: {support: full, details: builds the controller-side cache even in check mode; nothing on a host changes}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Build the bundle for the host
  voxbench_bundle:
    project_dir: /home/me/voxbench
    cache_dir: /home/me/voxbench/.cache/bundles
    python_version: "3.12"
    machine: aarch64
    glibc: "2.39"
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The bundle on the controller.
  returned: success
  type: str
manifest:
  description: Version id, platform and the wheels inside.
  returned: success
  type: dict
  contains:
    version_id:
      description: The exact voxbench in the bundle (C(bench_py.version.version_id)); the host must import this one.
      type: str
    platform:
      description: The bundle's platform tag, C(cp<python>-<machine>-glibc<version>).
      type: str
    python:
      description: The host's Python, C(major.minor).
      type: str
    machine:
      description: The host's architecture.
      type: str
    extra:
      description: The voxbench extra the host installs from the wheelhouse.
      returned: when this call built the bundle
      type: str
    wheels:
      description: The wheel files in the wheelhouse.
      returned: when this call built the bundle
      type: list
      elements: str
    drop_ins:
      description: Requirements without a wheel, and what provides their module instead.
      returned: when this call built the bundle
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project_dir": {"type": "path", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "python_version": {"type": "str", "required": True},
            "machine": {"type": "str", "required": True, "choices": ["x86_64", "aarch64"]},
            "glibc": {"type": "str", "required": True},
            "constraints": {"type": "path"},
        },
        supports_check_mode=True,
    )
    from pathlib import Path

    from bench_py.hosts.bundle import BundleError, HostPlatform, build_bundle

    params = module.params
    platform = HostPlatform(params["python_version"], params["machine"], params["glibc"])
    project, cache = Path(params["project_dir"]), Path(params["cache_dir"])
    try:
        result = build_bundle(project, cache, platform, Path(params["constraints"]) if params["constraints"] else None)
    except BundleError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=result["built"], path=result["path"], manifest=result["manifest"])


if __name__ == "__main__":
    main()
