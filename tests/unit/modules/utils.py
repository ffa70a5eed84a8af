"""Calling a module's ``main()`` in-process, the way community.docker's unit tests do.

The arguments reach :class:`AnsibleModule` through ansible-core's own ``patch_module_args`` (the
serialized ``ANSIBLE_MODULE_ARGS`` and profile a real module process reads on stdin), and
``exit_json``/``fail_json`` raise instead of printing and exiting, carrying the result. The result
goes through the encoder a real module writes its answer with, and back: a test sees what the
controller would see, and a value that module could not send fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
from types import ModuleType
from typing import Any

# torch's dynamo wraps the builtin sys.intern when it is first imported; ansible-core replaces
# sys.intern with a patch object at import. Both live in the one test process: torch goes first,
# or every later torch import (transformers, the 2C tests) fails with "substitute_in_graph
# expects a function".
import torch._dynamo  # noqa: F401

# isort: split
import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.module_utils.testing import patch_module_args

from tests.helpers import ROOT

#: The profile ``patch_module_args`` sends the arguments with; the answer goes back in the same one.
PROFILE = "legacy"


class AnsibleExitJson(Exception):
    """``exit_json`` was called; ``result`` is what the module returned."""

    def __init__(self, result: dict[str, Any], module: basic.AnsibleModule) -> None:
        super().__init__(result)
        self.result, self.module = result, module


class AnsibleFailJson(Exception):
    """``fail_json`` was called; ``result`` carries ``failed`` and ``msg``."""

    def __init__(self, result: dict[str, Any], module: basic.AnsibleModule) -> None:
        super().__init__(result)
        self.result, self.module = result, module


def as_sent(result: dict[str, Any]) -> dict[str, Any]:
    """The result as the module's JSON answer carries it to the controller."""
    encoder = get_module_encoder(PROFILE, Direction.MODULE_TO_CONTROLLER)
    return json.loads(json.dumps(result, cls=encoder))


def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(as_sent(kwargs), self)


def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
    kwargs.update(failed=True, msg=str(msg))
    raise AnsibleFailJson(as_sent(kwargs), self)


def load_module(name: str, folder: str = "library") -> ModuleType:
    """``<folder>/<name>.py`` as a Python module (it is not a package: Ansible ships it as a file)."""
    path = ROOT / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"voxbench_{folder}_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    return {**args, "_ansible_check_mode": check_mode}


def run_module(module: ModuleType, args: dict[str, Any], *, check_mode: bool = False) -> dict[str, Any]:
    """``module.main()`` with ``args``; its ``exit_json`` result (a ``fail_json`` fails the test, with its msg)."""
    with patch_module_args(_args(args, check_mode)):
        try:
            module.main()
        except AnsibleFailJson as failure:
            pytest.fail(f"{module.__name__} failed: {failure.result['msg']}")
        except AnsibleExitJson as done:
            return done.result
    pytest.fail(f"{module.__name__}.main() returned without calling exit_json or fail_json")


def fail_module(module: ModuleType, args: dict[str, Any], *, check_mode: bool = False) -> dict[str, Any]:
    """``module.main()`` with ``args``, which must end in ``fail_json``; its result."""
    with patch_module_args(_args(args, check_mode)):
        try:
            module.main()
        except AnsibleExitJson as done:
            pytest.fail(f"{module.__name__} succeeded where it should fail: {done.result}")
        except AnsibleFailJson as failure:
            assert failure.result["failed"] is True
            return failure.result
    pytest.fail(f"{module.__name__}.main() returned without calling exit_json or fail_json")


#: Keys Ansible's own result carries: not the module's to document.
STANDARD_KEYS = frozenset({"changed", "failed", "skipped", "msg", "invocation", "warnings", "deprecations"})


def returned_docs(module: ModuleType) -> dict[str, Any]:
    """The module's RETURN, as YAML."""
    return yaml.safe_load(module.RETURN) or {}


def undocumented(module: ModuleType, result: dict[str, Any]) -> list[str]:
    """The fields of ``result`` (and of each fact it sets) that the module's RETURN does not describe."""
    documented = returned_docs(module)
    missing = [key for key in result if key not in STANDARD_KEYS and key not in documented]
    facts_doc = (documented.get("ansible_facts") or {}).get("contains") or {}
    for fact, value in (result.get("ansible_facts") or {}).items():
        if fact not in facts_doc:
            missing.append(f"ansible_facts.{fact}")
            continue
        fields = facts_doc[fact].get("contains") or {}
        missing += [f"ansible_facts.{fact}.{key}" for key in value if key not in fields]
    return missing


def argument_spec(module: ModuleType) -> dict[str, Any]:
    """The module's real ``argument_spec``, read off the AnsibleModule its ``main()`` builds
    (called with an option it does not have, so that it stops at argument validation)."""
    with patch_module_args({"_voxbench_no_such_option": 1}):
        try:
            module.main()
        except (AnsibleExitJson, AnsibleFailJson) as stop:
            return dict(stop.module.argument_spec)
    pytest.fail(f"{module.__name__}.main() accepted an unknown option")


def action_plugin(name: str, args: dict[str, Any]) -> Any:
    """``action_plugins/<name>.py``'s ActionModule for a task with ``args``, on the local connection
    (what the task executor builds for a task delegated to localhost)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play_context import PlayContext
    from ansible.playbook.task import Task
    from ansible.plugins.loader import connection_loader

    task = Task()
    task.action, task.args = name, args
    play_context = PlayContext()
    connection = connection_loader.get("local", play_context, os.devnull)
    plugin = load_module(name, "action_plugins")
    return plugin.ActionModule(task, connection, play_context, DataLoader(), templar=None, shared_loader_obj=None)
