"""A run's lasting record: the benchmark branch (real git + git-lfs, file:// origin), the report
(rendered in headless Chromium), and the verdict recomputed from the files alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench_py.run import files
from bench_py.run.artifacts import branch_name
from bench_py.run.publish import publish_run
from bench_py.run.report import ReportError, build
from tests.helpers import chromium, console_errors
from tests.integration.conftest import CANARY

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent
NO_SMUDGE = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}


def git(*args: str, cwd: Path, env: dict | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_the_branch_holds_the_run_with_wavs_in_lfs(finished_run, tmp_path):
    run_dir, origin = finished_run["run_dir"], finished_run["origin"]
    measurements = files.read("measurements", run_dir / "measurements.json")
    branch = branch_name("voxtral", run_dir.name)
    assert branch.startswith("voxtral-bench-") and f"branch {branch}" in finished_run["stdout"]
    # main is untouched: still the initial commit only.
    assert git("log", "--format=%s", "main", cwd=origin) == "Initial commit"
    clone = tmp_path / "clone"
    git("clone", "--quiet", "-b", branch, origin.as_uri(), str(clone), cwd=tmp_path, env=NO_SMUDGE)
    verdict = json.loads((run_dir / "verdict.json").read_text())["verdict"]
    assert f"verdict {verdict}" in git("log", "-1", "--format=%s", cwd=clone)
    assert json.loads((clone / "docs" / f"{run_dir.name}.json").read_text()) == measurements
    assert (clone / "docs" / f"{run_dir.name}.report.html").is_file()
    wavs = sorted((run_dir / "wavs").rglob("*.wav"))
    assert wavs
    samples = next((clone / "docs").glob("voxtral-bench-samples-*"))
    assert "verdict" in (samples / "SUMMARY.md").read_text()
    for wav in wavs:
        committed = samples / wav.relative_to(run_dir / "wavs")
        assert committed.read_bytes().startswith(b"version https://git-lfs.github.com/spec/v1")
    git("lfs", "pull", cwd=clone)
    for wav in wavs:
        committed = samples / wav.relative_to(run_dir / "wavs")
        assert committed.read_bytes() == wav.read_bytes()
        assert committed.read_bytes()[:4] == b"RIFF"
    # The user's checkout stays on its own branch with a clean tree, and no token reached git.
    checkout = finished_run["checkout"]
    assert git("branch", "--show-current", cwd=checkout) == "main"
    assert git("status", "--porcelain", cwd=checkout) == ""
    assert git("worktree", "list", "--porcelain", cwd=checkout).count("worktree ") == 1
    history = subprocess.run(["git", "log", "--all", "-p"], cwd=clone, capture_output=True, check=True).stdout
    assert CANARY.encode() not in history


def test_publishing_again_adds_no_commit_and_later_scores_add_one(finished_run, tmp_path):
    run_dir, checkout, origin = finished_run["run_dir"], finished_run["checkout"], finished_run["origin"]
    branch = branch_name("voxtral", run_dir.name)
    head = git("rev-parse", branch, cwd=origin)
    again = publish_run(run_dir, checkout)
    assert (again.committed, again.pushed, again.commit) == (False, False, head)
    assert git("rev-parse", branch, cwd=origin) == head
    # Scores given later: a copy of the run with an answer appended, published onto the same branch.
    later = tmp_path / run_dir.name
    shutil.copytree(run_dir, later)
    files.append(
        "scores",
        later / "scores.jsonl",
        {
            "schema": "voxbench/scores/v0",
            "listener": "me",
            "simulated": False,
            "pair": "p00",
            "clip": "c0",
            "utterance": 0,
            "condition": "cloned",
            "side": "candidate",
            "score": 4,
            "at": "2026-11-26T09:00:00+00:00",
        },
    )
    update = publish_run(later, checkout)
    assert update.committed and update.pushed and update.branch == branch
    assert git("rev-parse", f"{branch}~1", cwd=origin) == head
    assert f"docs/{run_dir.name}.scores.jsonl" in git("show", "--name-only", "--format=", branch, cwd=origin)
    assert git("log", "--format=%s", "main", cwd=origin) == "Initial commit"


def _plot_data(html: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" class="plot-data">(.*?)</script>', html, re.S)
    return {d["id"]: d for d in map(json.loads, blocks)}


def test_the_report_renders_in_chromium_without_console_errors(finished_run):
    report = finished_run["run_dir"] / "report.html"
    with chromium() as driver:
        driver.get(report.as_uri())
        assert console_errors(driver) == []
        assert (
            driver.find_element("css selector", "#verdict .name").text
            == json.loads((finished_run["run_dir"] / "verdict.json").read_text())["verdict"]
        )
        ids = {e.get_attribute("id") for e in driver.find_elements("css selector", "figure")}
        assert {"ttfa-cdf", "latency-per-utterance", "chunk-timeline", "cotenant-latency", "memory-cgroup"} <= ids
        rows = driver.find_elements("css selector", "#retrospective tr")
        assert len(rows) == 1 + 9  # header + one row per safeguard
        assert "<script src" not in driver.page_source and "http" not in report.read_text().split("<body>")[0]


def test_each_plot_draws_exactly_the_samples_in_the_files(finished_run):
    run_dir = finished_run["run_dir"]
    m = files.read("measurements", run_dir / "measurements.json")
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


def test_objective_proxies_sit_beside_the_verdict(finished_run):
    run_dir = finished_run["run_dir"]
    m = files.read("measurements", run_dir / "measurements.json")
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
