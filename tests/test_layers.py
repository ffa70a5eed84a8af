"""The layering rule of docs/architecture.md: no bench_py module imports one of a layer above it.

Every import counts, wherever it stands (a function-level import is an import the module makes).
And no module grows past :data:`MAX_LINES`: one concern, one file that can be read whole.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

#: Lowest first. A module belongs to the longest prefix that names it; it may import its own layer
#: and the layers below.
LAYERS: list[tuple[str, ...]] = [
    (
        "bench_py",
        "bench_py.version",
        "bench_py.files",
        "bench_py.processes",
        "bench_py.clock",
        "bench_py.progress",
        "bench_py.audio",
        "bench_py.config",
        "bench_py.documents",
    ),
    ("bench_py.engines",),
    ("bench_py.measure",),
    ("bench_py.judge",),
    ("bench_py.voice",),
    ("bench_py.results",),
    ("bench_py.run", "bench_py.hosts"),
    ("bench_py.plan", "bench_py.api", "bench_py.cli", "bench_py.standins"),
]


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    return layer


def imports(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
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
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "bench_py" or name.startswith("bench_py.")}


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted((ROOT / "bench_py").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        own = layer_of(module)
        assert own >= 0, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
        for imported in imports(path, module):
            if layer_of(imported) > own:
                upward.append(f"{module} (layer {own}) imports {imported} (layer {layer_of(imported)})")
    assert upward == [], "\n".join(upward)


#: Issue 22: a bench_py file longer than this is split by concern.
MAX_LINES = 500


def test_no_module_is_over_500_lines():
    long = []
    for path in sorted((ROOT / "bench_py").rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long.append(f"{path.relative_to(ROOT)} has {lines} lines")
    assert long == [], f"over {MAX_LINES} lines, split by concern: " + "; ".join(long)
