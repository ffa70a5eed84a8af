"""Phase A0 on generated films: each subtitle format, accuracy against ground truth, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_py.standins.film import FORMATS, TARGET, generate
from bench_py.voice import extract, vtt
from tests.helpers import ROOT

BIN = Path(sys.executable).parent
SEEDS = (1, 2, 3)


@pytest.fixture(scope="session")
def films(session_dir):
    out = {}
    for seed in SEEDS:
        folder = session_dir / f"film-{seed}"
        out[seed] = (folder, generate(folder, seed=seed, lines=60))
    return out


@pytest.fixture(scope="session")
def example_clip(session_dir):
    """A clip of the target voice saying something the films never say (the user's example)."""
    path = session_dir / "example.wav"
    text = "The quiet morning came back to the station, and I kept thinking about the long walk home."
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(path)], check=True)
    return path


def is_target(candidate: dict, truth: dict) -> bool:
    a, b = candidate["start"], candidate["end"]

    def spoken(keep) -> float:
        return sum(max(0.0, min(b, x["end"]) - max(a, x["start"])) for x in truth["lines"] if keep(x["speaker"]))

    return spoken(lambda s: s != truth["target"]) < 0.3 and spoken(lambda s: s == truth["target"]) / (b - a) > 0.6


def _pick_cluster_by_ear(result: extract.Extraction, truth: dict) -> int:
    """What the user does: listen to one clip per cluster and pick the target's."""
    for entry in result.clusters:
        rep = entry["representative"]
        if is_target({"start": rep["start"], "end": rep["end"]}, truth):
            return entry["cluster"]
    raise AssertionError(f"no cluster representative is the target: {result.clusters}")


@pytest.mark.parametrize("kind", FORMATS)
def test_the_top_five_are_the_target_per_format(kind, films, example_clip, tmp_path):
    hits = total = 0
    for seed, (folder, truth) in films.items():
        film, subs, out = folder / truth["film"], folder / f"film.{kind}.vtt", tmp_path / f"{kind}-{seed}"
        if kind == "voice":
            result = extract.extract(film, subs, out, speaker="samantha")  # names match regardless of case
        elif kind == "none":
            result = extract.extract(film, subs, out, example=example_clip)
        else:
            listing = extract.extract(film, subs, out)
            assert listing.mode == "choose-cluster" and all(c["file"] for c in listing.clusters)
            assert all((out / c["file"]).is_file() for c in listing.clusters)
            result = extract.extract(film, subs, out, cluster_choice=_pick_cluster_by_ear(listing, truth))
        assert result.format == kind
        top = [c for c in result.to_json()["candidates"] if c.get("file")][:5]
        assert len(top) == 5, result.rejected
        for clip in top:
            path = out / clip["file"]
            assert path.stat().st_size > 2048
            assert path.name.startswith(f"{int(clip['start'])}-{int(clip['end'])}")
            assert 5.0 <= clip["end"] - clip["start"] <= 15.0
        hits += sum(is_target(c, truth) for c in top)
        total += len(top)
        assert json.loads((out / extract.CANDIDATES).read_text())["format_reason"] == result.format_reason
    assert hits / total >= 0.9, f"{kind}: {hits}/{total} of the top clips are {TARGET}"


def test_a_speaker_who_never_appears_and_unnamed_subtitles_say_so(films, tmp_path):
    folder, truth = films[1]
    with pytest.raises(extract.ExtractError, match=r"'Samatha' never speaks in these subtitles; they name: AMY"):
        extract.extract(folder / truth["film"], folder / "film.voice.vtt", tmp_path, speaker="Samatha")
    with pytest.raises(extract.ExtractError, match="the subtitles name no speakers"):
        extract.extract(folder / truth["film"], folder / "film.none.vtt", tmp_path, speaker="SAMANTHA")


def test_a_video_without_audio_and_missing_ffmpeg_are_clear_errors(films, tmp_path):
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:r=1:d=3",
                    "-c:v", "libx264", str(silent)], check=True)  # fmt: skip
    with pytest.raises(extract.ExtractError, match=r"silent\.mp4 has no audio stream"):
        extract.load_audio(silent)
    folder, truth = films[1]
    result = subprocess.run(
        [str(BIN / "python"), "-m", "bench_py.cli", "extract", str(folder / truth["film"]),
         str(folder / "film.voice.vtt"), "--out", str(tmp_path / "out"), "--speaker", "SAMANTHA"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PATH": "/nonexistent"},
    )  # fmt: skip
    assert result.returncode == 1 and "ffmpeg is missing" in result.stderr


def test_hostile_cue_text_writes_nothing_outside_the_output_directory(films, tmp_path):
    folder, truth = films[2]
    text = (folder / "film.voice.vtt").read_text()
    hostile = text.replace("<v SAMANTHA>", "<v ../../SAMANTHA $(touch /tmp/pwned) `id`>").replace(
        "<v.loud SAMANTHA>", "<v ../../SAMANTHA $(touch /tmp/pwned) `id`>"
    )
    (tmp_path / "hostile.vtt").write_text(hostile)
    out = tmp_path / "nested" / "out"
    before = set(tmp_path.rglob("*"))
    result = extract.extract(
        folder / truth["film"], tmp_path / "hostile.vtt", out, speaker="../../SAMANTHA $(touch /tmp/pwned) `id`"
    )
    written = set(tmp_path.rglob("*")) - before
    assert written and all(out in p.parents or p == out or p in out.parents for p in written)
    assert not Path("/tmp/pwned").exists()
    for candidate in result.to_json()["candidates"]:
        assert candidate["file"] is None or (candidate["file"].endswith(".wav") and "/" not in candidate["file"])


def test_confirming_merges_into_an_existing_allowlist_and_the_bench_refuses_others(films, tmp_path):
    from bench_py.voice import references

    folder, truth = films[3]
    out = tmp_path / "out"
    store = tmp_path / "services" / "audio-pipeline" / "voice-references"
    store.mkdir(parents=True)
    existing = {"owner": "chatterbox", "voices": {"narrator": "narrator.wav"}, "clips": {"old": {"file": "old.wav"}}}
    (store / "metadata.json").write_text(json.dumps(existing))
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "extract.yml", "-e", f"film={folder / truth['film']}",
         "-e", f"subtitles={folder / 'film.voice.vtt'}", "-e", "speaker=SAMANTHA",
         "-e", f"voxbench_extract_out_dir={out}",
         "-e", "confirm_rank=1", "-e", "reference_name=samantha", "-e", f"voxbench_extract_references_dir={store}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "subtitles: voice (" in run.stdout
    data = json.loads((store / "metadata.json").read_text())
    assert (
        data["owner"] == "chatterbox"
        and data["voices"] == existing["voices"]
        and data["clips"]["old"] == {"file": "old.wav"}
    )
    entry = data["clips"]["samantha"]
    assert entry["source_sha256"] == extract.sha256_file(folder / truth["film"]) and entry["speaker"] == "SAMANTHA"
    assert len(entry["source_span_s"]) == 2 and entry["confirmed_by"]
    verified = references.verify(store, "samantha")  # hashed and allowed
    assert Path(verified["path"]).read_bytes()[:4] == b"RIFF"
    (store / "samantha.wav").write_bytes(b"RIFF" + b"\0" * 100)
    with pytest.raises(references.ReferenceError, match="changed since it was confirmed"):
        references.verify(store, "samantha")


def test_subtitles_are_read_the_same_by_the_cli_and_the_library(films):
    folder, _ = films[1]
    for kind in FORMATS:
        assert vtt.read(folder / f"film.{kind}.vtt").format == kind


def test_the_python_api_runs_extract_yml(films, tmp_path):
    from bench_py import api

    folder, truth = films[1]
    facts = api.extract(folder / truth["film"], folder / "film.voice.vtt", speaker="SAMANTHA", out_dir=tmp_path)
    assert facts["format"] == "voice" and facts["mode"] == "named" and len(facts["candidates"]) == 5
    assert all((tmp_path / c["file"]).is_file() for c in facts["candidates"])
