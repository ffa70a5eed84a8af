"""Every module the host-side run can reach, and a check that a host's venv imports them all.

A lazy import (inside a function, as the preset sweep imports resemblyzer) is as much the run's
as a top-level one: it fails when the run gets there, on the host, mid-benchmark. So the closure
follows every ``import`` statement of every ``bench_py`` module reachable from the host's entry
points, wherever it stands, and names the third-party packages they need.

``python -m bench_py.hosts.closure`` (setup.yml runs it in the host's venv) imports them all and
exits non-zero naming each one that fails.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path

from bench_py.version import PACKAGE_ROOT

#: What runs on the GPU host: the host-side run and its recovery, and the modules Ansible runs there.
ENTRY_POINTS = (
    "bench_py.run.runner",
    "bench_py.run.phases",
    "bench_py.run.dispatcher",
    "bench_py.run.abort",
    "bench_py.hosts.cleanup",
    "bench_py.hosts.prefetch",
    "bench_py.plan",
)
HOST_MODULES = ("voxbench_launch", "voxbench_state", "voxbench_abort", "voxbench_status")
#: Reachable, and optional on purpose: 2C's transformers loader is its own extra ("inprocess");
#: without it 2C is blocked, saying how to install it.
OPTIONAL = {"transformers": "2C's transformers loader: pip install 'voxbench[inprocess]' on the host"}
#: Import names of third-party packages whose import name differs from nothing we can guess.
_SKIP = {"bench_py", "ansible"}


def _module_file(name: str) -> Path | None:
    relative = Path(*name.split("."))
    for candidate in (
        PACKAGE_ROOT.parent / relative.with_suffix(".py"),
        PACKAGE_ROOT.parent / relative / "__init__.py",
    ):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, package: str) -> set[str]:
    """Every module an ``import`` or ``from … import`` anywhere in the file names (relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            # `from bench_py.x import y` may name a module y.
            found.update(f"{base}.{alias.name}" for alias in node.names if base.startswith("bench_py"))
    return {name for name in found if name}


def closure(project_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """(bench_py modules, third-party top-level packages) the host-side run can reach."""
    project = project_dir or PACKAGE_ROOT.parent
    todo: list[tuple[str, Path]] = [(name, path) for name in ENTRY_POINTS if (path := _module_file(name))]
    library = [(f"library.{name}", project / "library" / f"{name}.py") for name in HOST_MODULES]
    missing = [str(path) for _, path in library if not path.is_file()]
    if missing:  # installed from a wheel, the project's library/ is not beside the package: say where it is
        raise FileNotFoundError(f"the project's Ansible modules are not at {', '.join(missing)}: pass --project")
    todo += library
    seen: set[str] = set()
    third_party: set[str] = set()
    while todo:
        name, path = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in _imports(path, package):
            top = imported.split(".")[0]
            if top == "bench_py":
                target = _module_file(imported)
                if target is not None:
                    todo.append((imported, target))
            elif top not in sys.stdlib_module_names and top not in _SKIP and top != "library":
                third_party.add(top)
    modules = sorted(name for name in seen if name.startswith("bench_py"))
    return modules, sorted(third_party)


def check(modules: list[str]) -> dict[str, str]:
    """Import each; what failed, and why (optional ones are said to be optional)."""
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # anything an import raises is this host's answer
            top = name.split(".")[0]
            why = f"{type(error).__name__}: {error}"
            failed[name] = f"optional ({OPTIONAL[top]}): {why}" if top in OPTIONAL else why
    return failed


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(prog="python -m bench_py.hosts.closure", description=__doc__.split("\n\n")[0])
    cli.add_argument("--list", action="store_true", help="print the modules and packages, import nothing")
    cli.add_argument(
        "--project", type=Path, help="the project whose library/ Ansible runs on the host (default: beside bench_py)"
    )
    args = cli.parse_args(argv)
    try:
        modules, packages = closure(args.project)
    except FileNotFoundError as error:
        cli.exit(2, f"{error}\n")
    if args.list:
        print("\n".join([*modules, *packages]))
        return
    failed = check([*modules, *packages])
    scorer_ran = False
    if "bench_py.judge.similarity" in modules and "bench_py.judge.similarity" not in failed:
        from bench_py.judge.similarity import SimilarityUnavailable, smoke

        try:  # the preset sweep scores on the host, as this user: run the scorer once, as it will
            smoke()
            scorer_ran = True
        except SimilarityUnavailable as error:
            failed["the scorer (bench_py.judge.similarity.smoke)"] = str(error)
    required = {name: why for name, why in failed.items() if not why.startswith("optional")}
    for name, why in failed.items():
        print(f"{name}: {why}")
    print(f"{len(modules) + len(packages) - len(failed)} of {len(modules) + len(packages)} modules import here")
    if scorer_ran:
        print("the scorer runs here")
    sys.exit(1 if required else 0)


if __name__ == "__main__":
    main()
