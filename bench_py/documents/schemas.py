"""The published JSON Schemas, generated from the models of :mod:`bench_py.documents.models`.

``python -m bench_py.documents.schemas`` (``make schemas``) writes ``bench_py/schemas/<kind>.v0.json``
and ``docs/schemas/<kind>.v0.json``; ``--check`` only says whether they are up to date. A unit test
keeps the committed files equal to what this generates, so a schema is changed in its model, never
by hand.

The output is draft 2020-12, as pydantic writes it, made plainer where that changes nothing it
accepts: a nullable type is one ``"type": [T, "null"]`` instead of an ``anyOf`` (a nullable
object's schema is written in place, typed ``["object", "null"]``), a union of bare types is one
``"type"`` list, a ``const`` or ``enum`` has no ``"type"`` beside it, a description is one line,
properties carry no generated title and no ``"default": null``, and keywords come in a fixed order
(:data:`KEYWORD_ORDER`). That keeps the errors :func:`bench_py.documents.validate` reports what
they were with the hand-written schemas: a validator reports a failed ``anyOf`` as "not valid under
any of the given schemas" rather than naming the field inside it, and breaks ties between equally
relevant errors by the order it meets the keywords in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema

from bench_py.documents.models import VERSION, Correction, Measurements, ScoreRecord, Verdict
from bench_py.documents.outputs import BenchOutput, StatusOutput

#: Each kind of file or output, by the name its schema is published under.
MODELS: dict[str, type[BaseModel]] = {
    "measurements": Measurements,
    "verdict": Verdict,
    "scores": ScoreRecord,
    "corrections": Correction,
    "cli-bench": BenchOutput,
    "cli-status": StatusOutput,
}

#: Keywords whose value maps names to schemas, holds a list of schemas, or is one schema.
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "if", "then", "else", "not", "contains", "propertyNames")
#: What a branch may not carry to be folded into a ``"type"`` list with ``null``.
_NOT_FOLDED = frozenset({"const", "$ref", "anyOf", "oneOf", "allOf"})
#: What an object's schema may not carry to be inlined where it may also be ``null``: keywords
#: that would apply to ``null`` too.
_NOT_INLINED = frozenset({"const", "enum", "$ref", "anyOf", "oneOf", "allOf", "if", "not"})
#: The order keywords are written in (the rest follow, alphabetically). It is also the order a
#: validator meets them in, which decides which of two equally relevant errors a message names:
#: the type before its bounds, what is required before what is allowed, properties before
#: conditions on them.
KEYWORD_ORDER = (
    "$schema", "$id", "title", "description", "type", "const", "enum", "pattern", "minLength", "maxLength",
    "minimum", "maximum", "required", "properties", "additionalProperties", "items", "prefixItems", "minItems",
    "maxItems", "$ref", "anyOf", "oneOf", "allOf", "if", "then", "else", "default", "$defs",
)  # fmt: skip
_DEF = "#/$defs/"


class _Plainer:
    """One pass over a generated schema (see the module's docstring), keyword-aware: a property
    that happens to be named ``default`` or ``description`` is a name, not a keyword."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def node(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: self.node(schema) for name, schema in value.items()}
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.node(schema) for schema in value]
            elif key in _SCHEMA_VALUES:
                out[key] = self.node(value)
            elif key == "default" and value is None:
                continue
            elif key == "description" and isinstance(value, str):
                out[key] = " ".join(value.split())  # a docstring's line breaks are not the text's
            else:
                out[key] = value
        if ("const" in out or "enum" in out) and "type" in out:
            del out["type"]  # the values say it; a type error would name the type, not the values
        return self.fold(out)

    def fold(self, node: dict[str, Any]) -> dict[str, Any]:
        """``anyOf [T, null]`` -> ``"type": [T, "null"]`` (an enum gains ``null``; an object's
        schema is written in place); ``anyOf`` of bare types -> one ``"type"`` list. (A ``const``
        or an ``enum`` loses pydantic's ``"type"`` beside it: its values already say it.)"""
        branches = node.get("anyOf")
        if not isinstance(branches, list):
            return node
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        if len(branches) == 2 and branches[1] == {"type": "null"}:
            inner = branches[0]
            ref = inner.get("$ref")
            if set(inner) == {"$ref"} and isinstance(ref, str) and ref.startswith(_DEF):
                target = self.defs.get(ref.removeprefix(_DEF), {})
                if target.get("type") == "object" and not (_NOT_INLINED & target.keys()):
                    inlined: dict[str, Any] = self.node({**target, **rest, "type": ["object", "null"]})
                    return inlined
            elif not (_NOT_FOLDED & inner.keys()) and not (rest.keys() & inner.keys()):
                if "enum" in inner:
                    return {**rest, **inner, "enum": [*inner["enum"], None]}
                if isinstance(inner.get("type"), str):
                    return {**rest, **inner, "type": [inner["type"], "null"]}
        if all(set(branch) == {"type"} and isinstance(branch["type"], str) for branch in branches):
            return {**rest, "type": [branch["type"] for branch in branches]}
        return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(_DEF)} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for key, value in node.items() if key != "$defs"))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _ordered(node: Any, parent: str | None = None) -> Any:
    """Keywords in :data:`KEYWORD_ORDER`; properties in the model's order, definitions by name."""
    if isinstance(node, list):
        return [_ordered(value, parent) for value in node]
    if not isinstance(node, dict) or parent in ("enum", "const", "default"):
        return node
    if parent == "properties":
        return {name: _ordered(schema) for name, schema in node.items()}
    if parent in ("$defs", "patternProperties", "dependentSchemas"):
        return {name: _ordered(node[name]) for name in sorted(node)}
    rank = {keyword: index for index, keyword in enumerate(KEYWORD_ORDER)}
    keys = sorted(node, key=lambda key: (rank.get(key, len(rank)), key))
    return {key: _ordered(node[key], key) for key in keys}


def plainer(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated schema made plainer where that changes nothing it accepts, its keywords in
    :data:`KEYWORD_ORDER`, and the definitions nothing refers to any more left out."""
    out: dict[str, Any] = _Plainer(schema.get("$defs", {})).node(schema)
    defs = out.pop("$defs", {})
    wanted: set[str] = set()
    todo = _refs(out)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _refs(defs[name])
    if wanted:
        out["$defs"] = {name: schema for name, schema in defs.items() if name in wanted}
    return cast(dict[str, Any], _ordered(out))


class _Generator(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # a property's name is its title

    def sort(self, value: JsonSchemaValue, parent_key: str | None = None) -> JsonSchemaValue:
        return value  # :func:`plainer` orders the keywords

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        return plainer(super().generate(schema, mode))


def generate(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind (``measurements``, ``scores``, ``cli-bench``...), from its model."""
    return MODELS[kind].model_json_schema(schema_generator=_Generator, mode="validation")


def text(kind: str) -> str:
    """The schema as its file holds it."""
    return json.dumps(generate(kind), indent=2) + "\n"


def file_name(kind: str) -> str:
    return f"{kind}.{VERSION}.json"


def targets(root: Path) -> list[Path]:
    """Where the schemas are published: in the package, and in the docs of a checkout."""
    return [path for path in (root / "bench_py" / "schemas", root / "docs" / "schemas") if path.parent.is_dir()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench_py.documents.schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="the checkout")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is not up to date")
    args = parser.parse_args(argv)
    stale = []
    for directory in targets(args.root):
        for kind in MODELS:
            path = directory / file_name(kind)
            wanted = text(kind)
            if path.is_file() and path.read_text(encoding="utf-8") == wanted:
                continue
            stale.append(path)
            if not args.check:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(wanted, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(args.root)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
