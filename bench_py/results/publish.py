"""What a run publishes on its benchmark branch, before and after the listening session's reveal.

Before the reveal (the run saved takes and its session is not revealed) the branch gets the
**sealed view**, in which nothing tells which clip came from which engine:

- published: the blind session (``scoring/session.json``: pairs by opaque id, sentences, each
  clip's sha256, the mapping's and the rule's hashes; ``scoring/listeners.json``: names;
  ``scoring/clips/<id>.wav``, both clips of a pair the same length), ``measurements.json`` as a
  sealed view (marked ``sealed_view``, with the sha256 of the full file), ``verdict.json``, the
  sealed ``report.html``, ``SUMMARY.md``, ``corrections.jsonl`` and ``reference.wav``;
- withheld: the mapping (in the 0600 ``scoring/sealed.json``, never published, until the reveal
  writes it into ``session.json``), per-request records (sample counts, durations, WAV paths), the
  load sweep's raw requests and real-time factors, per-side summaries other than counts and
  latency (audio durations, RTF, underruns; min and max), ``scores.jsonl`` (each listener's
  answers stay private), ``proxies.json`` and the takes under their sides' names (``wavs/``).

After the reveal the branch gets the whole run.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from bench_py import documents
from bench_py.files import is_disk_full
from bench_py.judge import pairing
from bench_py.judge import session as sessions
from bench_py.results import report
from bench_py.results.artifacts import LOW_SPACE_BYTES, Publication, PublishDiskFull, publish
from bench_py.results.figures import figures_from, summary_markdown

#: Per-side summary figures that stay visible before the reveal: counts and latency.
SEALED_SUMMARY_COUNTS = ("requests", "ok", "timeouts", "errors")
SEALED_SUMMARY_LATENCIES = ("ttfb_ms", "ttfa_ms", "ttfa_audible_ms", "total_ms")
#: Of a latency summary, the pooled figures (no single request's value: no min or max).
SEALED_STATISTICS = ("n", "p50", "p90", "p99", "mean", "method")
SEALED_LOAD_LEVEL = ("concurrency", "requests", "errors", "error_rate", "wall_s", "ttfa_ms", "total_ms")
SEALED_LOAD_RUN = ("mode", "limit", "requests_per_level", "max_error_rate", "stopped_early", "rate_per_s", "seed")
#: Run files that are published only once the session is revealed.
AFTER_REVEAL = (documents.FILE_NAMES["scores"], "scores.torn.jsonl", "proxies.json")
ALWAYS = (
    documents.FILE_NAMES["verdict"],
    documents.FILE_NAMES["corrections"],
    report.REPORT_NAME,
    f"{sessions.SCORING_DIR}/{sessions.SESSION}",
    f"{sessions.SCORING_DIR}/{sessions.LISTENERS}",
    "reference.wav",
)


def _latency(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: summary[key] for key in SEALED_STATISTICS if key in summary}


def _sealed_load(load: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in load.items() if k in ("utterance", "skipped")}
    for part in ("sweep", "poisson"):
        run = load.get(part)
        if not isinstance(run, dict):
            continue
        kept = {k: v for k, v in run.items() if k in SEALED_LOAD_RUN}
        levels = run.get("levels") if part == "sweep" else [run]
        clean = []
        for level in levels or []:
            entry = {k: v for k, v in level.items() if k in SEALED_LOAD_LEVEL}
            for metric in ("ttfa_ms", "total_ms"):
                if isinstance(entry.get(metric), dict):
                    entry[metric] = _latency(entry[metric])
            clean.append(entry)
        if part == "sweep":
            kept["levels"] = clean
        elif clean:
            kept.update(clean[0])
        out[part] = kept
    return out


def sealed_measurements(measurements: dict[str, Any], full_sha256: str) -> dict[str, Any]:
    """The measurements as published before the reveal (see the module's table). It still reads
    as measurements (the schema holds), so the verdict recomputes from it for rows 1 to 6.
    ``measurements`` is the file's JSON (:func:`bench_py.documents.dump` of the model): this
    writes a file, and must keep every key it does not withhold exactly as it was."""
    out = copy.deepcopy(measurements)
    bench = out.get("bench")
    if isinstance(bench, dict):
        bench["records"] = {}
        summary: dict[str, dict[str, Any]] = {}
        for side, conditions in (bench.get("summary") or {}).items():
            summary[side] = {}
            for condition, figures in conditions.items():
                kept = {k: figures[k] for k in SEALED_SUMMARY_COUNTS if k in figures}
                kept.update(
                    {k: _latency(figures[k]) for k in SEALED_SUMMARY_LATENCIES if isinstance(figures.get(k), dict)}
                )
                summary[side][condition] = kept
        bench["summary"] = summary
        if isinstance(bench.get("load"), dict):
            bench["load"] = _sealed_load(bench["load"])
    out["sealed_view"] = {
        "full_sha256": full_sha256,
        "withheld": [
            "bench.records (every request: sample counts, audio durations, chunk timelines, WAV paths)",
            "bench.summary figures other than counts and latency (audio_s, rtf, underruns), and min/max/stdev",
            "bench.load raw requests and real-time factors",
        ],
        "note": "published before the listening session's reveal; the full file follows it on this branch",
    }
    return out


def _dump(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def public_files(run_dir: Path, summary: str) -> tuple[dict[str, Path | bytes], bool]:
    """What the branch gets now (relative path in the run directory -> file or bytes), and
    whether it is the sealed view."""
    run_dir = Path(run_dir)
    run = report.load(run_dir)
    sealed = report.is_sealed(run)
    measurements_path = run_dir / documents.FILE_NAMES["measurements"]
    out: dict[str, Path | bytes] = {}
    if sealed and not run.measurements.extra("sealed_view"):
        full = hashlib.sha256(measurements_path.read_bytes()).hexdigest()
        sealed_view = sealed_measurements(documents.dump(run.measurements), full)
        out[documents.FILE_NAMES["measurements"]] = _dump(sealed_view)
    else:
        out[documents.FILE_NAMES["measurements"]] = measurements_path
    for name in ALWAYS + (() if sealed else AFTER_REVEAL):
        if (run_dir / name).is_file():
            out[name] = run_dir / name
    clips = run_dir / sessions.SCORING_DIR / "clips"
    for clip in sorted(clips.glob("*.wav")) if clips.is_dir() else []:
        out[f"{sessions.SCORING_DIR}/clips/{clip.name}"] = clip
    if not sealed and (run_dir / "wavs").is_dir():
        for wav in sorted((run_dir / "wavs").rglob("*.wav")):
            out[str(wav.relative_to(run_dir))] = wav
    out["SUMMARY.md"] = summary.encode("utf-8")
    return out, sealed


def seal_session(run_dir: Path) -> sessions.Session | None:
    """Create the blind session now (its mapping and the rule sealed by hash before anyone
    listens); None when the run has no utterance both engines saved yet."""
    run_dir = Path(run_dir)
    if (run_dir / sessions.SCORING_DIR / sessions.SESSION).is_file():
        return sessions.load(run_dir)
    measurements = documents.load_measurements(run_dir / documents.FILE_NAMES["measurements"])
    if measurements.extra("sealed_view") or not pairing.pairable(run_dir, measurements):
        return None
    return sessions.create(run_dir)


def _disk_full_under(run_dir: Path, error: Exception) -> bool:
    """Whether a full disk under the run stopped sealing or reporting. Not every tool says so
    (ffmpeg can leave an empty clip and exit 0, and the clip then reads as a broken WAV), so a
    disk left without room when a step failed counts too."""
    if is_disk_full(error):
        return True
    return shutil.disk_usage(run_dir).free < LOW_SPACE_BYTES


def _run_disk_full(run_dir: Path, error: Exception) -> str:
    said = os.strerror(errno.ENOSPC)
    if isinstance(error, OSError) and error.filename:
        said += f" writing {error.filename}"
    elif not isinstance(error, OSError):
        said += f": {error}"
    return (
        f"the disk under {run_dir} is full ({said}): the run's listening session and report could not be "
        "written there, so nothing was committed; its other files are untouched. Free some space and "
        "publish the run again"
    )


def publish_run(
    run_dir: Path, repo: Path, *, remote: str = "origin", base: str = "main", push: bool = True
) -> Publication:
    """Seal the session, rebuild the report (recomputing the verdict), then commit what may be
    published now on the run's benchmark branch."""
    run_dir = Path(run_dir).resolve()
    try:
        seal_session(run_dir)
        _, verdict = report.build(run_dir)
    except Exception as error:
        if not _disk_full_under(run_dir, error):
            raise
        raise PublishDiskFull(_run_disk_full(run_dir, error)) from None
    run = report.load(run_dir)
    sealed = report.is_sealed(run)
    facts = figures_from(run.measurements, verdict, str(run_dir), sealed=sealed)
    public, sealed = public_files(run_dir, summary_markdown(facts, run.measurements))
    return publish(
        repo,
        run_dir.name,
        public,
        candidate=run.measurements.candidate.name,
        verdict=verdict["verdict"],
        sealed=sealed,
        remote=remote,
        base=base,
        push=push,
    )
