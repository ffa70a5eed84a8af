#!/usr/bin/python
"""Report the voxbench runs on a host: the one holding the lock, and the newest ones."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_status
short_description: List a host's voxbench runs and which one holds the host
description:
  - Read-only. Returns the fact C(voxbench_status) with the run holding the host's lock (if any)
    and the newest runs with their state, live progress and whether the controller collected them.
options:
  state_dir:
    description: The host's voxbench state directory.
    type: path
    required: true
  limit:
    description: How many of the newest runs to list.
    type: int
    default: 10
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: What is running on the host
  voxbench_status:
    state_dir: ~/.local/state/voxbench
"""

RETURN = r"""
ansible_facts:
  description: C(voxbench_status) with C(holder) (the run id holding the host, or null) and C(runs).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={"state_dir": {"type": "path", "required": True}, "limit": {"type": "int", "default": 10}},
        supports_check_mode=True,
    )
    from bench_py.run.state import StateStore

    store = StateStore(module.params["state_dir"])
    status = {"holder": store.holder(), "runs": store.summaries(module.params["limit"])}
    module.exit_json(changed=False, ansible_facts={"voxbench_status": status})


if __name__ == "__main__":
    main()
