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
  contains:
    voxbench_status:
      description: The host's runs (status.yml shows them; the Python API returns them).
      type: dict
      contains:
        holder: {description: The run id holding the host's lock, or null., type: str}
        runs:
          description: The newest O(limit) runs, newest first; a run whose state file cannot be read is left out.
          type: list
          elements: dict
          contains:
            run_id: {description: The run., type: str}
            state: {description: Its state., type: str}
            terminal: {description: Whether it has ended (C(DONE) or C(ERROR_ABORTED))., type: bool}
            reason: {description: Why it ended (null before)., type: str}
            phase: {description: Live progress of its current phase., type: dict}
            created_at: {description: When it was created (ISO 8601, UTC)., type: str}
            updated_at: {description: When its state file last changed., type: str}
            collected: {description: Whether the controller has fetched it., type: bool}
            dispatcher_alive:
              description: Whether the process running it still runs (null when it has ended or none was recorded).
              type: bool
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
