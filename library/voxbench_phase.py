#!/usr/bin/python
"""Run one phase of a benchmark run on the host (thin adapter over bench_py.run.phases)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_phase
short_description: Run one phase of a voxbench run on the host
description:
  - Each phase asserts the state it expects, does its work, writes its file into the run
    directory and moves the run along the state machine. C(abort) tears down and post-flights
    first when the run had started anything, then records ERROR_ABORTED with O(reason).
options:
  phase:
    description: The phase to run.
    type: str
    required: true
    choices: [preflight, baseline, starting, benching, teardown, abort]
  state_dir:
    description: The host's voxbench state directory.
    type: path
    required: true
  run_id:
    description: The run.
    type: str
    required: true
  project_dir:
    description: Where this project is on the host (reference clips are resolved from it).
    type: path
    required: true
  reason:
    description: Why the run is aborted (O(phase=abort) only).
    type: str
    default: aborted
attributes:
  check_mode: {support: none}
  diff_mode: {support: none}
  idempotent: {support: none}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Measure the co-tenant's baseline (BASELINE)
  voxbench_phase:
    phase: baseline
    state_dir: ~/.local/state/voxbench
    run_id: "{{ voxbench_run_id }}"
    project_dir: /opt/voxbench
"""

RETURN = r"""
state:
  description: The run's state after the phase.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "phase": {
                "type": "str",
                "required": True,
                "choices": ["preflight", "baseline", "starting", "benching", "teardown", "abort"],
            },
            "state_dir": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "project_dir": {"type": "path", "required": True},
            "reason": {"type": "str", "default": "aborted"},
        },
        supports_check_mode=False,
    )
    from pathlib import Path

    from bench_py.run.phases import PhaseFailed, Run
    from bench_py.run.state import StateError, StateStore

    params = module.params
    try:
        run = Run(StateStore(params["state_dir"]), params["run_id"], Path(params["project_dir"]))
        result = run.run_phase(params["phase"], params["reason"])
    except (PhaseFailed, StateError) as error:
        module.fail_json(msg=str(error))
    state = str(run.store.load(params["run_id"]).state)
    module.exit_json(changed=True, state=state, result=result)


if __name__ == "__main__":
    main()
