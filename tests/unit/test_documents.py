"""The run's documents as models: the published JSON Schemas are generated from them."""

import gzip
import json
from collections import OrderedDict

import pytest

from bench_py import documents
from bench_py.documents import schemas
from bench_py.documents.schemas import MODELS
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


V0 = ROOT / "tests" / "data" / "v0-branches"


def _v0(suffix):
    return sorted(V0.glob(f"*.{suffix}.gz"))


def _unzipped(path, tmp_path):
    target = tmp_path / path.name.removesuffix(".gz")
    target.write_bytes(gzip.decompress(path.read_bytes()))
    return target


def test_the_v0_corpus_is_all_there():
    assert (len(_v0("measurements.json")), len(_v0("verdict.json")), len(_v0("scores.jsonl"))) == (20, 20, 3)


@pytest.mark.parametrize("path", _v0("measurements.json"), ids=lambda p: p.name)
def test_every_published_v0_measurements_file_reads_as_its_model(path, tmp_path):
    """Valid by the generated schema, parsed into the model, and given back exactly as written."""
    unzipped = _unzipped(path, tmp_path)
    raw = json.loads(unzipped.read_text())
    documents.validate("measurements", raw)
    measurements = documents.load_measurements(unzipped)
    assert isinstance(measurements, documents.Measurements)
    assert measurements.run_id == path.name.removesuffix(".measurements.json.gz")
    assert documents.dump(measurements) == raw
    assert json.dumps(documents.dump(measurements), sort_keys=True) == json.dumps(raw, sort_keys=True)


@pytest.mark.parametrize("path", _v0("verdict.json"), ids=lambda p: p.name)
def test_every_published_v0_verdict_reads_as_its_model(path, tmp_path):
    unzipped = _unzipped(path, tmp_path)
    raw = json.loads(unzipped.read_text())
    documents.validate("verdict", raw)
    verdict = documents.load_verdict(unzipped)
    assert isinstance(verdict, documents.Verdict)
    assert documents.dump(verdict) == raw


@pytest.mark.parametrize("path", _v0("scores.jsonl"), ids=lambda p: p.name)
def test_every_line_of_a_published_v0_scores_log_reads_as_its_model(path, tmp_path):
    unzipped = _unzipped(path, tmp_path)
    lines = [json.loads(line) for line in unzipped.read_text().splitlines()]
    for number, line in enumerate(lines, start=1):
        documents.validate("scores", line, f" line {number}")
    records = documents.load_scores(unzipped)
    assert all(isinstance(record, documents.ScoreRecord) for record in records)
    assert [documents.dump(record) for record in records] == lines


@pytest.mark.parametrize("path", _v0("measurements.json"), ids=lambda p: p.name.split(".")[0])
def test_every_published_v0_run_rebuilds_from_its_files_and_gives_its_verdict_again(path, tmp_path):
    """The readers take the models: each v0 run's report is rebuilt from its files, and the verdict
    derived again (none of these runs has a sealed session, so no answer counts) is the stored one."""
    from bench_py.results.figures import figures, summary_lines
    from bench_py.results.report import build

    run = path.name.removesuffix(".measurements.json.gz")
    run_dir = tmp_path / run
    run_dir.mkdir()
    for suffix, name in (("measurements.json", "measurements.json"), ("verdict.json", "verdict.json")):
        (run_dir / name).write_bytes(gzip.decompress((V0 / f"{run}.{suffix}.gz").read_bytes()))
    scores = V0 / f"{run}.scores.jsonl.gz"
    if scores.exists():
        (run_dir / "scores.jsonl").write_bytes(gzip.decompress(scores.read_bytes()))
    stored = documents.load_verdict(run_dir / "verdict.json")
    report, verdict = build(run_dir)
    keys = ("verdict", "row", "reason", "rule_sha256", "evidence")
    assert {k: verdict[k] for k in keys} == {k: documents.dump(stored)[k] for k in keys}
    assert report.is_file() and run in report.read_text()
    lines = summary_lines(figures(run_dir))
    assert lines[0].startswith(f"run       {run}") and lines[1].startswith(f"verdict   {stored.verdict}: ")


def test_a_file_is_schema_checked_once_per_process_for_the_same_bytes(tmp_path, monkeypatch):
    """The collector reads one measurements file half a dozen times: the same bytes are checked
    once; any other bytes (a changed figure, a broken file) are checked, and refused, every time."""
    checked = []
    real_validate = documents.validate
    monkeypatch.setattr(documents, "_VALID_READS", OrderedDict())  # what earlier tests read is known already
    monkeypatch.setattr(
        documents, "validate", lambda kind, data, where="": (checked.append(kind), real_validate(kind, data, where))
    )
    source = _unzipped(_v0("measurements.json")[0], tmp_path)
    path = tmp_path / "measurements.json"
    path.write_bytes(source.read_bytes())
    first = documents.load_measurements(path)
    assert documents.load_measurements(path) == first and checked == ["measurements"]
    data = json.loads(path.read_text())
    data["run_id"] = data["run_id"][:-1] + ("1" if data["run_id"][-1] != "1" else "2")
    path.write_text(json.dumps(data))
    assert documents.load_measurements(path).run_id == data["run_id"] != first.run_id and len(checked) == 2
    data["bench"] = "not an object"
    path.write_text(json.dumps(data))
    for attempt in (3, 4):
        with pytest.raises(documents.RunFileError, match="measurements bench"):
            documents.load_measurements(path)
        assert len(checked) == attempt
