"""Phase A0 on generated films: each subtitle shape, accuracy against ground truth, joined references
from a target who speaks in short lines, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_py.audio import read_wav_file
from bench_py.standins.film import FILES, TARGET, generate, properties
from bench_py.voice import clips, extract, vtt
from tests.helpers import ROOT

BIN = Path(sys.executable).parent
SEEDS = (1, 2, 3)
LONG_SHAPES = ("voice", "dash", "youtube", "none")  # measured on the long-style films, as before


@pytest.fixture(scope="session")
def films(session_dir):
    out = {}
    for seed in SEEDS:
        folder = session_dir / f"film-{seed}"
        out[seed] = (folder, generate(folder, seed=seed, lines=60))
    return out


@pytest.fixture(scope="session")
def short_film(session_dir):
    """A target who never speaks 5 s without a break: lines of 1.5-4.5 s, other voices close by or
    over her, her own voice through another engine as a distractor, music and background voices."""
    folder = session_dir / "film-short"
    truth = generate(folder, seed=11, lines=90, style="short")
    return folder, truth


@pytest.fixture(scope="session")
def example_clip(session_dir):
    """A clip of the target voice saying something the films never say (the user's example)."""
    path = session_dir / "example.wav"
    text = "The quiet morning came back to the station, and I kept thinking about the long walk home."
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(path)], check=True)
    return path


def is_target(candidate: dict, truth: dict) -> bool:
    """The issue's definition: at least 90% of the clip's speech is the target's and other voices
    (other speakers' lines, background voices) fill at most 0.3 s of it; a joined clip is judged
    on its source spans."""
    spans = candidate.get("spans") or [[candidate["start"], candidate["end"]]]

    def heard(keep) -> float:
        lines = sum(
            max(0.0, min(b, x["end"]) - max(a, x["start"]))
            for a, b in spans
            for x in truth["lines"]
            if keep(x["speaker"])
        )
        return lines + (
            sum(max(0.0, min(b, y) - max(a, x)) for a, b in spans for x, y in truth.get("background", []))
            if keep(None)
            else 0.0
        )

    target, others = heard(lambda s: s == truth["target"]), heard(lambda s: s != truth["target"])
    return others <= 0.3 and target >= 0.9 * (target + others) and target > 0


def _pick_cluster_by_ear(result: extract.Extraction, truth: dict) -> int:
    """What the user does: listen to one clip per cluster and pick the target's."""
    for entry in result.clusters:
        rep = entry["representative"]
        if is_target({"start": rep["start"], "end": rep["end"]}, truth):
            return entry["cluster"]
    raise AssertionError(f"no cluster representative is the target: {result.clusters}")


@pytest.mark.parametrize("kind", LONG_SHAPES)
def test_the_top_five_are_the_target_per_format(kind, films, example_clip, tmp_path):
    hits = total = 0
    for seed, (folder, truth) in films.items():
        film, subs, out = folder / truth["film"], folder / FILES[kind], tmp_path / f"{kind}-{seed}"
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
        clips.load_audio(silent)
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
    assert "subtitles: webvtt, voice (" in run.stdout
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
    for kind in LONG_SHAPES:
        assert vtt.read(folder / FILES[kind]).format == kind


def test_the_python_api_runs_extract_yml(films, tmp_path):
    from bench_py import api

    folder, truth = films[1]
    facts = api.extract(folder / truth["film"], folder / "film.voice.vtt", speaker="SAMANTHA", out_dir=tmp_path)
    assert facts["format"] == "voice" and facts["mode"] == "named" and len(facts["candidates"]) == 5
    assert all((tmp_path / c["file"]).is_file() for c in facts["candidates"])


SHAPE_FORMATS = {"voice": "voice", "dash": "dash", "youtube": "youtube", "continuous": "continuous", "none": "none",
                 "srt": "dash"}  # fmt: skip


@pytest.mark.parametrize("shape", list(SHAPE_FORMATS))
def test_a_target_who_speaks_in_short_lines_yields_joined_references(shape, short_film, example_clip, tmp_path):
    folder, truth = short_film
    facts = properties(truth)
    # The premise, measured on the ground truth: no single stretch of hers reaches 5 s.
    assert facts["longest_uninterrupted_target_s"] < 5.0 and facts["near_another_voice"] >= 0.3, facts
    assert facts["overlapped"] >= 0.1 and facts["distractor_similarity"] >= 0.7, facts
    kwargs = {"speaker": "Samantha"} if shape == "voice" else {"example": example_clip}
    result = extract.extract(folder / truth["film"], folder / FILES[shape], tmp_path, **kwargs).to_json()
    assert result["format"] == SHAPE_FORMATS[shape] and result["syntax"] == ("srt" if shape == "srt" else "webvtt")
    kept = [c for c in result["candidates"] if c["file"]]
    assert len(kept) == 5 and all(c["kind"] == "joined" for c in kept), result["summary"]
    for clip in kept:
        assert clip["file"].startswith("joined-") and len(clip["spans"]) >= 2
        assert all(b - a >= 1.0 for a, b in clip["spans"]) and clip["spans"] == sorted(clip["spans"])
        pcm = read_wav_file(str(tmp_path / clip["file"]))
        expected = sum(b - a for a, b in clip["spans"]) + 0.3 * (len(clip["spans"]) - 1)
        assert 5.0 <= pcm.duration_s <= 15.0 and abs(pcm.duration_s - expected) < 0.25
    right = sum(is_target(c, truth) for c in kept)
    assert right >= 4, [(c["spans"], is_target(c, truth)) for c in kept]
    # Every single stretch was turned down, and the summary counts why.
    rejected = result["summary"]["rejected"]
    assert result["summary"]["single"] == 0 and sum(rejected.values()) == len(result["rejected"]) > 0


def test_fewer_references_than_asked_say_why_and_a_joined_one_is_confirmed_through_ansible(
    short_film, example_clip, tmp_path
):
    from bench_py.voice import references

    folder, truth = short_film
    out, store = tmp_path / "out", tmp_path / "voice-references"
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "extract.yml", "-e", f"film={folder / truth['film']}",
         "-e", f"subtitles={folder / FILES['srt']}", "-e", f"example={example_clip}", "-e", "top=40",
         "-e", f"voxbench_extract_out_dir={out}", "-e", "confirm_rank=1", "-e", "reference_name=samantha",
         "-e", f"voxbench_extract_references_dir={store}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "subtitles: srt, dash (" in run.stdout
    summary = json.loads((out / extract.CANDIDATES).read_text())["summary"]
    assert summary["asked"] == 40 and 0 < summary["produced"] < 40 and summary["joined"] > 0
    assert f"{summary['produced']} of 40 references" in run.stdout and "why fewer: " in run.stdout
    assert "you can try: another cluster" in run.stdout and summary["clean_regions"] > 0 and summary["rejected"]
    # A lower minimum is offered only when it would admit something.
    result = json.loads((out / extract.CANDIDATES).read_text())
    admits = sum(r.get("why") == "short" and r["end"] - r["start"] >= 3.0 for r in result["rejected"])
    assert ("--min-seconds 3 (now 5) admits" in run.stdout) == (admits > 0)
    entry = references.verify(store, "samantha")
    assert entry["kind"] == "joined" and len(entry["source_spans_s"]) >= 2
    assert entry["source"].startswith(f"{truth['film']} joined ")
    first = json.loads((out / extract.CANDIDATES).read_text())["candidates"][0]
    assert entry["source_spans_s"] == first["spans"] and entry["source_span_s"] == [first["start"], first["end"]]


def test_the_cli_lists_joined_references_and_the_summary(short_film, example_clip, tmp_path):
    folder, truth = short_film
    result = subprocess.run(
        [str(BIN / "voxbench"), "extract", str(folder / truth["film"]), str(folder / FILES["youtube"]),
         "--out", str(tmp_path), "--example", str(example_clip), "--top", "30", "--min-seconds", "4"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "subtitles: webvtt, youtube (" in result.stdout and "joined from " in result.stdout
    assert "why fewer: " in result.stdout and "stretches are shorter than the minimum" in result.stdout
    listed = subprocess.run([str(BIN / "voxbench"), "voices", "list", str(tmp_path)], capture_output=True, text=True)
    assert listed.returncode == 0 and "why fewer: " in listed.stdout
