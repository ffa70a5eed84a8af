#!/usr/bin/python
"""Ask the run on this host to abort (operator abort), and optionally wait until it has."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_abort
short_description: Write a run's abort flag (operator abort) and wait for its teardown
description:
  - Writes the abort flag of the run in progress (or O(run_id)); the host's run then goes to
    ERROR_ABORTED through teardown. Used on Ctrl-C or an API cancel; a lost controller does not
    call it, so its run goes on.
  - When the run's process is gone and nothing is left to read the flag (its tmux pane was killed with
    the tmux server, say), the module runs the run's own teardown itself (voxbench run's closing step)
    and returns C(closed_here).
options:
  state_dir:
    description: The host's voxbench state directory.
    type: path
    required: true
  run_id:
    description: The run to abort; default the one holding the host.
    type: str
  reason:
    description: Why, recorded in the run.
    type: str
    default: operator abort
  wait_s:
    description: Wait up to this long for the run to end (0 returns at once).
    type: float
    default: 120
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Abort the run in progress
  voxbench_abort:
    state_dir: /var/lib/voxbench
"""

RETURN = r"""
run_id:
  description: The run asked to abort (absent when no run was in progress).
  returned: success
  type: str
state:
  description: Its state when the module returned.
  returned: success
  type: str
closed_here:
  description: True when the run's process was gone and this module tore the run down itself.
  returned: when the module closed the run
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "required": True},
            "run_id": {"type": "str"},
            "reason": {"type": "str", "default": "operator abort"},
            "wait_s": {"type": "float", "default": 120.0},
        },
        supports_check_mode=True,
    )
    import time
    from pathlib import Path

    from bench_py.run.abort import read_abort, request_abort
    from bench_py.run.state import StateError, StateStore

    store = StateStore(module.params["state_dir"])
    try:
        run_id = module.params["run_id"] or store.holder()
        current = store.load(run_id) if run_id else None
        run_dir = store.run_dir(run_id) if run_id else None
    except (StateError, ValueError) as error:  # an unknown run, or a lock naming a removed one
        module.fail_json(msg=f"cannot abort: {error}")
    if current is None or run_dir is None or current.terminal:
        module.exit_json(
            changed=False,
            run_id=run_id,
            state=None if current is None else str(current.state),
            msg="no run in progress",
        )
    changed = read_abort(run_dir) is None
    closed_here = False
    if not module.check_mode:
        request_abort(run_dir, "operator", module.params["reason"])
        project_dir = (current.changes.get("dispatcher") or {}).get("project_dir")
        if store.dispatcher_alive(current) is False and project_dir:
            # Nobody is left to read the flag (the run's tmux pane is gone, its close-unfinished step
            # with it): the run's own teardown runs here, as its process would have run it.
            from bench_py.run.runner import close_unfinished

            reason = f"operator abort: {module.params['reason']} (the run's process was gone; closed by the abort)"
            closed_here = (
                close_unfinished(store.root, run_id, Path(project_dir), say=lambda _: None, reason=reason) == 1
            )
            closed_here = closed_here and store.load(run_id).terminal
        deadline = time.monotonic() + module.params["wait_s"]
        while not store.load(run_id).terminal and time.monotonic() < deadline:
            time.sleep(0.5)
    result = {"changed": changed, "run_id": run_id, "state": str(store.load(run_id).state)}
    module.exit_json(**result, **({"closed_here": True} if closed_here else {}))


if __name__ == "__main__":
    main()
