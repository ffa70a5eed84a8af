#!/usr/bin/python
"""Resolve and validate voxbench's configuration (thin adapter over bench_py.config)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_config
short_description: Resolve and validate the voxbench configuration
description:
  - Deep-merges O(overrides) over voxbench's shipped defaults, applies the selected profile and
    validates the result into one typed model. Errors name every bad key.
options:
  overrides:
    description: Keys to merge over the defaults (inventory C(voxbench_config), extra vars).
    type: dict
    default: {}
  gemma_mode:
    description: How to treat the co-tenant; overrides O(overrides.gemma_mode).
    type: str
    choices: [parallel, pause-gemma]
  plan:
    description:
      - Also return the run's plan from the configuration alone (what would run, and every check
        the configuration fails against the real engines' facts); the host adds its own facts.
    type: bool
    default: false
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Resolve the configuration
  voxbench_config:
    overrides: "{{ voxbench_config | default({}) }}"
    gemma_mode: parallel
  register: config
"""

RETURN = r"""
config:
  description:
    - The validated configuration, every default filled in (docs/configuration.md lists every key).
    - Below, the keys the roles and playbooks read from it.
  returned: success
  type: dict
  contains:
    gemma_mode:
      description: How the co-tenant is treated, C(parallel) or C(pause-gemma).
      type: str
    paths:
      description: Where the host keeps voxbench's state and the token.
      type: dict
      contains:
        state_dir: {description: The host's state directory (runs and the host lock)., type: str}
        token_file: {description: The Hugging Face token file on the host., type: str}
    candidate:
      description: The engine benchmarked.
      type: dict
      contains:
        model: {description: The model's Hugging Face id., type: str}
        hf_cache_dir: {description: The host's Hugging Face cache (null when not mounted)., type: str}
version_id:
  description: The controller's exact voxbench (release + digest of its files).
  returned: success
  type: str
plan:
  description: The plan from the configuration alone (see C(voxbench plan)); its C(ok) says whether it passes.
  returned: when O(plan) is true
  type: dict
plan_text:
  description: The plan as a person reads it.
  returned: when O(plan) is true
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "overrides": {"type": "dict", "default": {}},
            "gemma_mode": {"type": "str", "choices": ["parallel", "pause-gemma"]},
            "plan": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    from bench_py.config.model import ConfigError, load

    overrides = dict(module.params["overrides"])
    if module.params["gemma_mode"]:
        overrides["gemma_mode"] = module.params["gemma_mode"]
    try:
        config = load(overrides)
    except ConfigError as error:
        module.fail_json(msg=f"invalid voxbench configuration: {error}")
    from bench_py.version import version_id

    result = {"changed": False, "config": config.model_dump(mode="json"), "version_id": version_id()}
    if module.params["plan"]:
        from bench_py.plan import make_plan, render

        result["plan"] = make_plan(config)
        result["plan_text"] = render(result["plan"], "configuration")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
