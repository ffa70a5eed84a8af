#!/usr/bin/python
"""Start a benchmark run on the host inside tmux, or attach to the one in progress."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_launch
short_description: Start the host-side run (voxbench run) in tmux, or attach to the run in progress
description:
  - Creates a run (state PREFLIGHT, host lock taken), writes its configuration, and starts the
    run (C(voxbench run RUN_ID), every phase in one process) in the tmux session C(voxbench) so
    the run survives the controller's SSH connection. When a run already holds the host, returns
    it (attach) unless O(new_run) is true, which fails with the command to attach.
  - In check mode nothing is started; the host's facts are read (architecture, free memory, the
    image's platforms, whether the co-tenant answers, the ports, the cached weights) and the run's
    plan returned; the task fails when the plan does.
options:
  config:
    description: The resolved configuration from M(voxbench_config).
    type: dict
    required: true
  project_dir:
    description: Where this project's playbooks, roles and library are on the host.
    type: path
    required: true
  python:
    description: The host's voxbench interpreter; C(voxbench) is taken from its directory.
    type: path
    required: true
  new_run:
    description: Refuse to attach; fail if another run holds the host.
    type: bool
    default: false
  tmux_session:
    description: Name of the tmux session runs are started in.
    type: str
    default: voxbench
  expected_version:
    description: The controller's voxbench version id; the host must run exactly this one.
    type: str
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
  idempotent: {support: none}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Start the run on the host
  voxbench_launch:
    config: "{{ config.config }}"
    project_dir: /opt/voxbench
    python: /opt/voxbench/venv/bin/python
"""

RETURN = r"""
run_id:
  description:
    - The run started or attached to (the watcher and the collector follow it).
    - Null in check mode, which starts nothing.
  returned: success
  type: str
attached:
  description:
    - True when an existing run was found and followed instead of starting one (the run holding
      the host, or one that ended while its controller was away and was not collected yet).
    - False in check mode.
  returned: success
  type: bool
run_dir:
  description: The run's directory on the host (null in check mode).
  returned: success
  type: str
recovered:
  description:
    - Runs left in progress by a dispatcher that is gone (tmux killed, host rebooted), closed to
      ERROR_ABORTED before this run started, with what was removed for each.
  returned: success, not in check mode
  type: list
  elements: dict
  contains:
    run_id: {description: The run closed., type: str}
    was: {description: The state it was left in., type: str}
    reason: {description: C(dispatcher_lost) or C(host_restarted)., type: str}
pid:
  description: The process id of the tmux pane running the new run.
  returned: when a run was started
  type: int
ansible_facts:
  description: The run as facts, for the watcher, the collector and programs reading runner events.
  returned: when a run was started or attached to
  type: dict
  contains:
    voxbench_run:
      description: The run this host is on.
      type: dict
      contains:
        run_id: {description: The run started or attached to., type: str}
        run_dir: {description: Its directory on the host., type: str}
        attached: {description: True when an existing run was followed instead of starting one., type: bool}
plan:
  description: What the run would do on this host and every check against the facts (C(voxbench plan)).
  returned: in check mode
  type: dict
plan_text:
  description: The plan as a person reads it.
  returned: in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config": {"type": "dict", "required": True},
            "project_dir": {"type": "path", "required": True},
            "python": {"type": "path", "required": True},
            "new_run": {"type": "bool", "default": False},
            "tmux_session": {"type": "str", "default": "voxbench"},
            "expected_version": {"type": "str"},
        },
        supports_check_mode=True,
    )
    from bench_py.run.dispatcher import LaunchError, launch
    from bench_py.version import version_id

    expected = module.params["expected_version"]
    if expected and expected != version_id():
        module.fail_json(
            msg=f"voxbench on this host is {version_id()} but the controller runs {expected}; "
            "run setup.yml to install the controller's version, then bench again"
        )
    if module.check_mode:
        from bench_py.config.model import Config
        from bench_py.plan import gather_facts, make_plan, render

        config = Config.model_validate(module.params["config"])
        plan = make_plan(config, gather_facts(config))
        text = render(plan, plan["host"] or "host")
        if not plan["ok"]:
            module.fail_json(msg=f"the plan fails on this host:\n{text}", plan=plan, plan_text=text)
        module.exit_json(changed=False, plan=plan, plan_text=text, run_id=None, attached=False, run_dir=None)
    try:
        result = launch(
            module.params["config"],
            module.params["project_dir"],
            module.params["python"],
            new_run=module.params["new_run"],
            tmux_session=module.params["tmux_session"],
            dry_run=module.check_mode,
        )
    except LaunchError as error:
        module.fail_json(msg=str(error))
    run = {key: result[key] for key in ("run_id", "run_dir", "attached")}
    module.exit_json(
        changed=not result["attached"] and not module.check_mode, ansible_facts={"voxbench_run": run}, **result
    )


if __name__ == "__main__":
    main()
