"""Every module's documentation against its code and against what the roles and playbooks read.

DOCUMENTATION's options are the argument_spec that ``main()`` really builds; RETURN names every
field a role or playbook reads from a registered result or from a module's facts, down to the
nested keys wherever RETURN describes what a field contains.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT
from tests.unit.modules.utils import argument_spec, load_module

MODULES = sorted(path.stem for path in (ROOT / "library").glob("voxbench_*.py"))
PLUGINS = {name: ROOT / "library" / f"{name}.py" for name in MODULES} | {
    "voxbench_choose": ROOT / "action_plugins" / "voxbench_choose.py"
}
#: Keys Ansible puts in every result (or that a task's own keywords add): nothing to document.
STANDARD = {"changed", "failed", "skipped", "msg", "unreachable", "results", "invocation", "warnings", "deprecations"}
STANDARD |= {"ansible_job_id", "finished", "started"}  # what Ansible returns for a task started with async


def docs(path: Path) -> dict[str, Any]:
    """The module's DOCUMENTATION, EXAMPLES and RETURN, read as Ansible reads them (the text, not an import)."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
            found[target.id] = yaml.safe_load(ast.literal_eval(node.value))
    return found


def playbook_files() -> list[Path]:
    return sorted([*ROOT.glob("*.yml"), *(ROOT / "roles").rglob("*.yml")])


def registrations() -> list[tuple[str, str, str]]:
    """(file, module, register name) of every task that runs one of our modules and registers it."""
    found = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            module = next((key for key in node if key in PLUGINS), None)
            if module and "register" in node:
                found.append((where, module, node["register"]))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for path in playbook_files():
        walk(yaml.safe_load(path.read_text()), str(path.relative_to(ROOT)))
    return found


def reads(name: str) -> set[tuple[str, ...]]:
    """Every attribute chain read from ``name`` in the roles and playbooks (``name.a.b`` -> ('a', 'b'))."""
    chains = set()
    for path in playbook_files():
        for match in re.finditer(rf"(?<!\w){re.escape(name)}((?:\.[A-Za-z_]\w*)+)", path.read_text()):
            chains.add(tuple(match.group(1).lstrip(".").split(".")))
    return chains


def missing_from(documented: dict[str, Any], chain: tuple[str, ...]) -> str | None:
    """The first key of ``chain`` RETURN does not describe (nested keys only where it says what a field contains)."""
    level = documented
    for depth, key in enumerate(chain):
        if key not in level:
            return ".".join(chain[: depth + 1])
        level = level[key].get("contains")
        if level is None:
            return None
    return None


@pytest.mark.parametrize("name", list(PLUGINS))
def test_the_documentation_is_yaml_and_names_the_module(name):
    found = docs(PLUGINS[name])
    assert set(found) >= {"DOCUMENTATION", "RETURN"}
    kind = "action" if name == "voxbench_choose" else "module"
    assert found["DOCUMENTATION"][kind] == name
    assert isinstance(found["RETURN"], dict) and found["RETURN"]
    for field, entry in found["RETURN"].items():
        assert entry.get("description") and entry.get("type"), f"{name} RETURN {field}: description and type"


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_are_the_argument_spec(name):
    options = docs(PLUGINS[name])["DOCUMENTATION"]["options"]
    spec = argument_spec(load_module(name))
    assert sorted(options) == sorted(spec)
    for option, real in spec.items():
        doc = options[option]
        said = (doc.get("type", "str"), bool(doc.get("required", False)), doc.get("default"), doc.get("choices"))
        does = (real.get("type", "str"), bool(real.get("required", False)), real.get("default"), real.get("choices"))
        assert said == does, (
            f"{name} option {option}: documented (type, required, default, choices) {said}, code {does}"
        )


def test_the_roles_register_our_modules_where_this_test_looks():
    modules = {module for _, module, _ in registrations()}
    assert {"voxbench_config", "voxbench_launch", "voxbench_state", "voxbench_results", "voxbench_bundle"} <= modules
    assert {"voxbench_artifacts", "voxbench_abort", "voxbench_choose", "voxbench_score"} <= modules


@pytest.mark.parametrize(("where", "module", "register"), registrations())
def test_every_field_read_from_a_registered_result_is_in_return(where, module, register):
    documented = docs(PLUGINS[module])["RETURN"]
    for chain in sorted(reads(register)):
        if chain[0] in STANDARD:
            continue
        missing = missing_from(documented, chain)
        assert missing is None, f"{where}: {register}.{'.'.join(chain)} reads {missing}, which {module}'s RETURN lacks"


def facts_set(name: str) -> set[str]:
    """The facts the module's code sets (``ansible_facts={"name": ...}``)."""
    return set(re.findall(r'ansible_facts=\{"(\w+)"', PLUGINS[name].read_text()))


FACTS = {fact: name for name in MODULES for fact in facts_set(name)}


def test_the_facts_modules_set_are_the_ones_their_return_describes():
    assert FACTS == {
        "voxbench_extraction": "voxbench_extract",
        "voxbench_results": "voxbench_results",
        "voxbench_run": "voxbench_launch",
        "voxbench_status": "voxbench_status",
        "voxbench_verdict": "voxbench_score",
    }
    for fact, name in FACTS.items():
        assert set(docs(PLUGINS[name])["RETURN"]["ansible_facts"]["contains"]) == {fact}


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_every_field_read_from_a_fact_is_in_return(fact):
    documented = docs(PLUGINS[FACTS[fact]])["RETURN"]["ansible_facts"]["contains"][fact]["contains"]
    chains = reads(fact)
    assert chains, f"no role or playbook reads {fact}: this test would check nothing"
    for chain in sorted(chains):
        missing = missing_from(documented, chain)
        assert missing is None, f"{fact}.{'.'.join(chain)} reads {missing}, which {FACTS[fact]}'s RETURN lacks"
