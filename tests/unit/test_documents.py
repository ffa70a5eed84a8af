"""The run's documents as models: the published JSON Schemas are generated from them."""

import json

import pytest

from bench_py import documents
from bench_py.documents import schemas
from bench_py.documents.models import MODELS
from tests.helpers import ROOT


@pytest.mark.parametrize("directory", ["bench_py/schemas", "docs/schemas"])
def test_the_committed_schemas_are_the_ones_the_models_generate(directory):
    """A schema is changed in its model; a hand edit of a committed file fails here."""
    folder = ROOT / directory
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(schemas.file_name(kind) for kind in MODELS)
    for kind in MODELS:
        committed = (folder / schemas.file_name(kind)).read_text(encoding="utf-8")
        assert committed == schemas.text(kind), f"{directory}/{schemas.file_name(kind)}: run `make schemas`"


def test_validation_uses_the_generated_schemas():
    for kind in MODELS:
        assert documents.schema(kind) == schemas.generate(kind)
        assert documents.schema(kind)["$id"] == f"voxbench/{kind}/v0"
        assert documents.schema(kind)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_generator_writes_the_schemas_and_checks_them(tmp_path, capsys):
    (tmp_path / "bench_py").mkdir()
    (tmp_path / "docs").mkdir()
    assert schemas.main(["--root", str(tmp_path), "--check"]) == 1  # nothing written yet
    assert schemas.main(["--root", str(tmp_path)]) == 0
    assert schemas.main(["--root", str(tmp_path), "--check"]) == 0
    edited = tmp_path / "docs" / "schemas" / "verdict.v0.json"
    data = json.loads(edited.read_text())
    data["properties"]["row"]["maximum"] = 9
    edited.write_text(json.dumps(data, indent=2) + "\n")
    capsys.readouterr()
    assert schemas.main(["--root", str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().out == "stale docs/schemas/verdict.v0.json\n"


def test_plainer_folds_only_what_changes_nothing():
    nullable = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}], "description": "d"}
    assert schemas.plainer(nullable) == {"description": "d", "type": ["number", "null"], "minimum": 0}
    enum = {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}
    assert schemas.plainer(enum) == {"enum": ["a", "b", None]}
    two = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert schemas.plainer(two) == {"type": ["integer", "string"]}
    refs = {"anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}], "$defs": {"A": {"type": "object"}, "B": {}}}
    assert schemas.plainer(refs)["anyOf"] == refs["anyOf"]  # a real choice stays one
    named = {"type": "object", "properties": {"default": {"type": "null"}, "description": {"default": None}}}
    assert schemas.plainer(named)["properties"] == {"default": {"type": "null"}, "description": {}}
