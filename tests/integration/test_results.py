"""A run's lasting record: the benchmark branch (real git + git-lfs, file:// origin), the report
(rendered in headless Chromium), and the verdict recomputed from the files alone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench_py import documents
from bench_py.results.artifacts import branch_name
from bench_py.results.publish import publish_run
from bench_py.results.report import ReportError, build
from tests.helpers import chromium, console_errors
from tests.integration.conftest import CANARY, score_by_mapping

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent
NO_SMUDGE = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}


def git(*args: str, cwd: Path, env: dict | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_the_branch_holds_the_sealed_run_with_clips_in_lfs(finished_run, tmp_path):
    run_dir, origin = finished_run["run_dir"], finished_run["origin"]
    measurements = documents.read("measurements", run_dir / "measurements.json")
    branch = branch_name("voxtral", run_dir.name)
    assert branch.startswith("voxtral-bench-") and f"branch {branch}" in finished_run["stdout"]
    # main is untouched: still the initial commit only.
    assert git("log", "--format=%s", "main", cwd=origin) == "Initial commit"
    clone = tmp_path / "clone"
    git("clone", "--quiet", "-b", branch, origin.as_uri(), str(clone), cwd=tmp_path, env=NO_SMUDGE)
    verdict = json.loads((run_dir / "verdict.json").read_text())["verdict"]
    assert f"verdict {verdict} (sealed for blind listening)" in git("log", "-1", "--format=%s", cwd=clone)
    published = clone / "docs" / run_dir.name
    full = (run_dir / "measurements.json").read_bytes()
    assert json.loads((published / "measurements.json").read_text()) == json.loads(
        sealed_view(measurements, hashlib.sha256(full).hexdigest())
    )
    assert (published / "report.html").is_file() and 'id="sealed"' in (published / "report.html").read_text()
    assert "Sealed for blind listening" in (published / "SUMMARY.md").read_text()
    assert not (published / "wavs").exists() and not (published / "scores.jsonl").exists()
    assert not (published / "proxies.json").exists() and not (published / "scoring" / "sealed.json").exists()
    clips = sorted((run_dir / "scoring" / "clips").glob("*.wav"))
    assert len(clips) == 2 * len(json.loads((run_dir / "scoring" / "session.json").read_text())["pairs"])
    for clip in clips:
        committed = published / "scoring" / "clips" / clip.name
        assert committed.read_bytes().startswith(b"version https://git-lfs.github.com/spec/v1")
    git("lfs", "pull", cwd=clone)
    for clip in clips:
        committed = published / "scoring" / "clips" / clip.name
        assert committed.read_bytes() == clip.read_bytes() and committed.read_bytes()[:4] == b"RIFF"
    # The user's checkout stays on its own branch with a clean tree, and no token reached git.
    checkout = finished_run["checkout"]
    assert git("branch", "--show-current", cwd=checkout) == "main"
    assert git("status", "--porcelain", cwd=checkout) == ""
    assert git("worktree", "list", "--porcelain", cwd=checkout).count("worktree ") == 1
    history = subprocess.run(["git", "log", "--all", "-p"], cwd=clone, capture_output=True, check=True).stdout
    assert CANARY.encode() not in history


def sealed_view(measurements: dict, full_sha256: str) -> str:
    from bench_py.results.publish import sealed_measurements

    return json.dumps(sealed_measurements(measurements, full_sha256))


@pytest.fixture(scope="module")
def scored_branch(finished_run, tmp_path_factory):
    """The real route on a repository of its own: the run published sealed, three listeners scoring
    blind (and a few answers refused), the reveal when the last one finishes, the run published whole."""
    from bench_py.judge import session as sessions
    from bench_py.results.artifacts import ensure_embedded_origin

    tmp = tmp_path_factory.mktemp("scored")
    run_dir = tmp / finished_run["run_dir"].name
    shutil.copytree(finished_run["run_dir"], run_dir)
    checkout = ensure_embedded_origin(tmp / "artifacts")
    sealed = publish_run(run_dir, checkout)
    assert sealed.committed and sealed.pushed
    secret = json.loads((run_dir / "scoring" / "sealed.json").read_text())
    session = sessions.load(run_dir)
    pair = next(p for p in session.data["pairs"] if secret["mapping"][p["a"]]["condition"] == "preset")
    sessions.register(session, "zed")
    sessions.answer(session, "zed", pair["pair"], pair["a"], 2)  # zed never finishes: the reveal waits
    with pytest.raises(sessions.SessionError, match=r"waiting for .*zed"):
        sessions.reveal(session, by="listeners")
    with pytest.raises(sessions.RefusedAnswer):
        sessions.answer(session, "nobody", pair["pair"], pair["a"], 5)
    during = publish_run(run_dir, checkout)  # published again mid-session: still sealed
    assert during.committed and during.pushed
    # Five listeners, ten cloned answers per side: the candidate better by 0.4, short of the margin.
    given: dict[str, int] = {}

    def score(who: str, entry: dict) -> int:
        key = f"{entry['side']}-{entry['condition']}"
        given[key] = given.get(key, 0) + 1
        return 4 if key == "candidate-cloned" and given[key] <= 4 else 3

    score_by_mapping(run_dir, ["l1", "l2", "l3", "l4", "l5"], score)
    closed = subprocess.run([str(BIN / "voxbench"), "score", str(run_dir), "--close"], capture_output=True, text=True)
    assert closed.returncode == 0, closed.stderr
    revealed = publish_run(run_dir, checkout)
    assert revealed.committed and revealed.pushed and revealed.branch == sealed.branch
    return {
        "run_dir": run_dir,
        "origin": checkout.parent / "origin.git",
        "branch": sealed.branch,
        "sealed": during.commit,
        "revealed": revealed.commit,
        "secret": secret,
        "tmp": tmp,
    }


ENGINE_WORDS = ("candidate", "incumbent", "voxtral", "chatterbox", "espeak", "flite", "festival", "cloned", "preset")


#: Series the sealed view keeps on purpose, each clocked by its own sampler and blind to the takes:
#: the co-tenant's probes (baseline, post-flight) and the memory sampler's timeline. Their values
#: (0.1 s sampling offsets, probe latencies, 4 decimals) can equal a take's figure by chance: one
#: CI run saw a memory sample at 0.5065 s and a similarity of 0.5065.
SAMPLER_SERIES = {"samples", "timeline"}


def _json_numbers(value) -> list[float]:
    """Every number in a JSON value, but in the sampler series (:data:`SAMPLER_SERIES`)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [
            n for k, v in value.items() if not (k in SAMPLER_SERIES and isinstance(v, list)) for n in _json_numbers(v)
        ]
    if isinstance(value, list):
        return [n for v in value for n in _json_numbers(v)]
    return []


def test_nothing_published_before_the_reveal_maps_a_clip_to_a_side(scored_branch, tmp_path):
    """Everything reachable from the branch's last commit before the reveal (every commit, every
    file, every LFS object, every message) is searched for a way back to the mapping; the ways a
    listener could try to re-derive it (names, sizes, durations, order, A/B slot) are tried."""
    run_dir, sealed_commit = scored_branch["run_dir"], scored_branch["sealed"]
    mapping = scored_branch["secret"]["mapping"]
    clip_ids = set(mapping)
    clone = tmp_path / "clone"
    git("clone", "--quiet", "--no-checkout", scored_branch["origin"].as_uri(), str(clone), cwd=tmp_path, env=NO_SMUDGE)
    objects = git("rev-list", "--objects", sealed_commit, cwd=clone).splitlines()
    blobs = {}  # path -> [contents of every version before the reveal]
    for line in objects:
        sha, _, path = line.partition(" ")
        if path and git("cat-file", "-t", sha, cwd=clone) == "blob":
            data = subprocess.run(["git", "cat-file", "-p", sha], cwd=clone, capture_output=True, check=True).stdout
            blobs.setdefault(path, []).append(data)
    prefix = f"docs/{run_dir.name}/"
    assert f"{prefix}scoring/session.json" in blobs and f"{prefix}scores.jsonl" not in blobs
    # 1. Names: the only WAVs are the opaque clips and the reference; no path names a side.
    wav_paths = {p for p in blobs if p.endswith(".wav")}
    assert wav_paths == {f"{prefix}scoring/clips/{c}.wav" for c in clip_ids} | {f"{prefix}reference.wav"}
    for path in blobs:
        assert not [w for w in ENGINE_WORDS if w in path.removeprefix(prefix).lower()], path
    # 2. Clip ids appear in the session's public pairs and hashes only: nowhere else, in no message.
    for path, versions in blobs.items():
        for data in versions:
            mentioned = {c for c in clip_ids if c.encode() in data}
            if path == f"{prefix}scoring/session.json":
                session = json.loads(data)
                assert not [k for k in session if k.startswith("revealed") or k == "scores_at_reveal"]
                assert all(set(p) == {"pair", "a", "b", "text"} for p in session["pairs"])
                assert set(session["clips_sha256"]) == clip_ids
            elif not path.endswith(".wav"):
                assert not mentioned, f"{path} names clips {mentioned}"
            for secret in (scored_branch["secret"]["seed"], scored_branch["secret"]["salt"]):
                assert secret.encode() not in data, path
    messages = git("log", "--format=%B", sealed_commit, cwd=clone)
    assert not {c for c in clip_ids if c in messages}
    # 3. What is withheld is nowhere: the full measurements, answers, proxies, the takes (LFS oids),
    #    and no published number equals a take's duration, sample count or real-time factor.
    local_objects = {line.split()[0] for line in objects}
    for withheld in ("measurements.json", "scores.jsonl", "proxies.json"):
        sha = git("hash-object", str(run_dir / withheld), cwd=clone)
        assert sha not in local_objects, withheld
    pointers = b"".join(data for path, versions in blobs.items() if path.endswith(".wav") for data in versions)
    for take in (run_dir / "wavs").rglob("*.wav"):
        assert hashlib.sha256(take.read_bytes()).hexdigest().encode() not in pointers, take
    m = documents.read("measurements", run_dir / "measurements.json")
    takes = json.loads((run_dir / "proxies.json").read_text())["takes"]
    secret_numbers = {float(r[k]) for side in m["bench"]["records"].values() for r in side for k in ("audio_s", "rtf")}
    secret_numbers |= {float(t[k]) for t in takes for k in ("duration_s", "duration_ratio", "similarity")}
    secret_numbers = {x for x in secret_numbers if round(x * 100) != x * 100}  # not a round figure like 0.5
    secret_numbers |= {float(r["samples"]) for side in m["bench"]["records"].values() for r in side if r["samples"]}
    for path, versions in blobs.items():
        if path.endswith((".json", ".jsonl")):
            for data in versions:
                for line in data.decode().splitlines() if path.endswith(".jsonl") else [data.decode()]:
                    leaked = secret_numbers & set(_json_numbers(json.loads(line)))
                    assert not leaked, f"{path} carries {sorted(leaked)[:3]}"
    report = blobs[f"{prefix}report.html"][-1].decode()
    assert 'id="sealed"' in report and "RTF" not in report and 'id="proxies"' not in report
    assert not {"ttfa-cdf", "latency-per-utterance", "chunk-timeline"} & set(
        re.findall(r'<figure id="([^"]+)"', report)
    )
    # 4. Re-deriving the mapping: every feature of a clip is either equal within its pair (so it
    #    cannot pick a side) or drawn from secrets (ids, and the order that follows them).
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", sealed_commit, cwd=clone, env=NO_SMUDGE)
    git("lfs", "pull", "--include", f"{prefix}scoring/clips/*", cwd=clone)
    session = json.loads((clone / prefix / "scoring" / "session.json").read_text())
    clips = clone / prefix / "scoring" / "clips"
    tree = git("ls-tree", "--name-only", f"{sealed_commit}:{prefix}scoring/clips", cwd=clone).splitlines()
    assert tree == sorted(tree)  # git lists by name: the order is the random ids' order
    added = git("log", "--format=%H", "--diff-filter=A", sealed_commit, "--", f"{prefix}scoring/clips", cwd=clone)
    assert len(added.splitlines()) == 1  # every clip in one commit: no commit order to read
    hits = {"smaller id": 0, "slot A": 0}
    for pair in session["pairs"]:
        a, b = (clips / f"{pair['a']}.wav").read_bytes(), (clips / f"{pair['b']}.wav").read_bytes()
        assert len(a) == len(b) and a[:44] == b[:44]  # sizes and header durations tie: no guess possible
        first_is_candidate = mapping[pair["a"]]["side"] == "candidate"
        hits["smaller id"] += first_is_candidate == (pair["a"] < pair["b"])
        hits["slot A"] += first_is_candidate
    pairs = len(session["pairs"])
    assert hits["slot A"] * 2 == pairs  # counterbalanced: "A is the candidate" is right exactly half the time
    print(f"\nre-deriving the mapping from {pairs} published pairs: {hits} (chance: {pairs / 2:g})")


def test_a_fresh_clone_of_the_branch_recomputes_the_stored_verdict(scored_branch, tmp_path):
    run_dir = scored_branch["run_dir"]
    stored = documents.read("verdict", run_dir / "verdict.json")
    assert (stored["verdict"], stored["row"]) == ("keep_chatterbox", 8)
    assert stored["statistics"]["n"] == {"candidate": 10, "incumbent": 10}
    assert stored["evidence"]["means"] == {"candidate": 3.4, "incumbent": 3.0}
    clone = tmp_path / "clone"
    git("clone", "--quiet", "-b", scored_branch["branch"], scored_branch["origin"].as_uri(), str(clone), cwd=tmp_path)
    assert git("rev-parse", "HEAD", cwd=clone) == scored_branch["revealed"]
    git("lfs", "pull", cwd=clone)
    published = clone / "docs" / run_dir.name
    # The branch carries the session (mapping and seals), every answer (refused ones too) and the rule.
    session = json.loads((published / "scoring" / "session.json").read_text())
    assert session["revealed_mapping"] == scored_branch["secret"]["mapping"]
    assert (published / "scores.jsonl").read_bytes() == (run_dir / "scores.jsonl").read_bytes()
    assert sum("refused" in r for r in documents.read_records("scores", published / "scores.jsonl")) == 1
    assert not (published / "scoring" / "sealed.json").exists() and not (published / "scoring" / "server.json").exists()
    for take in (run_dir / "wavs").rglob("*.wav"):  # the takes under their sides' names, after the reveal
        assert (published / take.relative_to(run_dir)).read_bytes() == take.read_bytes()
    result = subprocess.run(
        [str(BIN / "voxbench"), "report", str(published), "--json"], capture_output=True, text=True, cwd=clone
    )
    assert result.returncode == 0, result.stderr
    recomputed = json.loads(result.stdout)
    assert recomputed == stored
    assert git("status", "--porcelain", cwd=clone) == ""  # the same verdict.json and a byte-identical report
    # A correction is an append-only record naming one of this run's verdicts, nothing else.
    correct = [str(BIN / "voxbench"), "correct", str(published), "--reason", "r", "--evidence", "e"]
    wrong = subprocess.run([*correct, "--verdict", "keep_whatever"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "is not one of this run's verdicts" in wrong.stderr
    right = subprocess.run(
        [*correct, "--retracts", "keep_chatterbox", "--verdict", "inconclusive"], capture_output=True
    )
    assert right.returncode == 0
    again = subprocess.run([str(BIN / "voxbench"), "report", str(published)], capture_output=True, text=True)
    assert again.returncode == 0 and "retracts <code>keep_chatterbox</code>" in (published / "report.html").read_text()


def test_publishing_again_adds_no_commit(scored_branch):
    head = git("rev-parse", scored_branch["branch"], cwd=scored_branch["origin"])
    checkout = scored_branch["origin"].parent / "checkout"
    again = publish_run(scored_branch["run_dir"], checkout)
    assert (again.committed, again.pushed, again.commit) == (False, False, head)
    assert git("rev-parse", f"{scored_branch['branch']}~1", cwd=scored_branch["origin"]) == scored_branch["sealed"]
    assert git("log", "--format=%s", "main", cwd=scored_branch["origin"]) == "Initial commit"


def _plot_data(html: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" class="plot-data">(.*?)</script>', html, re.S)
    return {d["id"]: d for d in map(json.loads, blocks)}


def test_the_report_renders_in_chromium_sealed_then_whole(finished_run, revealed_run):
    per_request = {"ttfa-cdf", "latency-per-utterance", "chunk-timeline", "score-distribution"}
    with chromium() as driver:
        for run_dir, sealed in ((finished_run["run_dir"], True), (revealed_run, False)):
            report = run_dir / "report.html"
            driver.get(report.as_uri())
            assert console_errors(driver) == []
            assert (
                driver.find_element("css selector", "#verdict .name").text
                == json.loads((run_dir / "verdict.json").read_text())["verdict"]
            )
            ids = {e.get_attribute("id") for e in driver.find_elements("css selector", "figure")}
            assert {"cotenant-latency", "memory-cgroup"} <= ids
            assert bool(driver.find_elements("css selector", "#sealed")) == sealed
            headline = driver.find_element("css selector", "#headline").text
            if sealed:  # before the reveal: latency only, no per-request plot, no proxies
                assert not per_request & ids and "RTF" not in headline and "TTFA p50" in headline
                assert not driver.find_elements("css selector", "#proxies")
            else:
                assert per_request <= ids and "RTF p50" in headline
                assert driver.find_elements("css selector", "#proxies")
                assert "agreement between them" in driver.find_element("css selector", "#agreement").text
            rows = driver.find_elements("css selector", "#retrospective tr")
            assert len(rows) == 1 + 9  # header + one row per safeguard
            assert "<script src" not in driver.page_source and "http" not in report.read_text().split("<body>")[0]


def test_each_plot_draws_exactly_the_samples_in_the_files(revealed_run):
    run_dir = revealed_run
    m = documents.read("measurements", run_dir / "measurements.json")
    html = (run_dir / "report.html").read_text()
    plots = _plot_data(html)
    timed = {side: [r for r in recs if not r["warmup"] and r["ok"]] for side, recs in m["bench"]["records"].items()}
    for side, records in timed.items():
        for condition in ("cloned", "preset"):
            expected = sorted(r["ttfa_ms"] for r in records if r["condition"] == condition)
            drawn = [p[0] for p in plots["ttfa-cdf"]["series"][f"{side} {condition}"]]
            assert drawn == expected
            totals = sorted(
                (r["utterance"], r["repetition"], r["total_ms"]) for r in records if r["condition"] == condition
            )
            assert plots["latency-per-utterance"]["series"][f"{side} {condition}"] == [[u, t] for u, _, t in totals]
    chunk = plots["chunk-timeline"]
    record = next(
        r
        for r in timed["candidate"]
        if (r["utterance"], r["repetition"]) == (chunk["utterance"], chunk["repetition"]) and r["condition"] == "cloned"
    )
    cumulative, expected = 0, []
    for ms, n in record["arrivals"]:
        cumulative += n
        expected.append([ms, cumulative / record["sample_rate"]])
    assert chunk["series"]["candidate audio received"] == expected
    probes = [p for g in m["cotenant"]["gate"] for p in g["probes"]]
    everything = m["baseline"]["samples"] + probes + m["teardown"]["postflight"]["samples"]
    assert sorted(p[1] for p in plots["cotenant-latency"]["series"]["co-tenant"]) == sorted(
        s["latency_ms"] for s in everything if s["latency_ms"] is not None
    )
    assert {b["label"] for b in plots["cotenant-latency"]["bands"]} >= {"BASELINE", "BENCHING", "TEARDOWN"}
    assert plots["memory-cgroup"]["series"]["cgroup"] == m["bench"]["memory"]["sources"]["cgroup"]["timeline"]
    # The picture has one vertex group per sample.
    for plot in plots.values():
        for name, points in plot["series"].items():
            assert f'data-series="{name}" data-n="{len(points)}"' in html


def test_the_same_files_give_byte_identical_reports_and_the_verdict_recomputes(finished_run, tmp_path):
    run_dir = finished_run["run_dir"]
    first, verdict = build(run_dir, tmp_path / "a.html")
    second, _ = build(run_dir, tmp_path / "b.html")
    assert first.read_bytes() == second.read_bytes() == (run_dir / "report.html").read_bytes()
    assert verdict == json.loads((run_dir / "verdict.json").read_text())
    result = subprocess.run(
        [str(BIN / "voxbench"), "report", str(run_dir), "--out", str(tmp_path / "c.html"), "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and json.loads(result.stdout)["verdict"] == verdict["verdict"]


def test_a_stored_verdict_that_does_not_recompute_is_an_error(finished_run, tmp_path):
    copy = tmp_path / finished_run["run_dir"].name
    shutil.copytree(finished_run["run_dir"], copy)
    verdict = json.loads((copy / "verdict.json").read_text())
    (copy / "verdict.json").write_text(json.dumps({**verdict, "verdict": "swap_candidate", "row": 7}))
    result = subprocess.run([str(BIN / "voxbench"), "report", str(copy)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "verdict.json says swap_candidate (row 7) but the files give" in result.stderr


def test_a_rule_changed_after_preflight_is_refused(finished_run, tmp_path):
    copy = tmp_path / finished_run["run_dir"].name
    shutil.copytree(finished_run["run_dir"], copy)
    m = json.loads((copy / "measurements.json").read_text())
    m["preflight"]["rule"]["thresholds"]["min_mean_margin"] = 0.1
    (copy / "measurements.json").write_text(json.dumps(m))
    with pytest.raises(ReportError, match="the rule was changed after PREFLIGHT"):
        build(copy)


def test_objective_proxies_sit_beside_the_verdict(revealed_run):
    run_dir = revealed_run
    m = documents.read("measurements", run_dir / "measurements.json")
    proxies = json.loads((run_dir / "proxies.json").read_text())
    saved = sorted(r["wav"] for recs in m["bench"]["records"].values() for r in recs if r.get("wav"))
    assert sorted(t["wav"] for t in proxies["takes"]) == saved
    by_key = {(t["side"], t["condition"], t["utterance"]): t for t in proxies["takes"]}
    for (side, condition, utterance), take in by_key.items():
        assert take["transcript"].strip()  # real speech was heard
        assert 0.0 <= take["wer"] <= 2.0
        assert -60.0 < take["loudness_lufs"] < 0.0
        assert -1.0 <= take["similarity"] <= 1.0
        other = by_key[("incumbent" if side == "candidate" else "candidate", condition, utterance)]
        assert take["duration_ratio"] * other["duration_ratio"] == pytest.approx(1.0, rel=1e-3)
    assert proxies["summary"]["candidate"]["cloned"]["wer"] < 1.0  # recognisable, not noise
    html = (run_dir / "report.html").read_text()
    assert 'id="proxies"' in html and proxies["asr"] in html
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert "proxies" not in json.dumps(verdict["evidence"])  # beside the verdict, never inside it
