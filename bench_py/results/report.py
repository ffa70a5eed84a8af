"""The report: one self-contained HTML file rebuilt from a run's files alone.

``build(run_dir)`` reads the files (each validated by its schema), recomputes the verdict from the
sealed rule and the answers that count (blind, from registered listeners, given before the reveal),
refuses a run whose stored verdict disagrees, and renders the page. Identical files give
byte-identical reports: nothing here reads a clock or an unordered set.

Until the listening session is revealed the report is sealed: it shows what cannot tell a listener
which clip came from which engine (the verdict, latency summaries, the co-tenant, memory, the
install paths) and withholds the rest (per-request plots, audio durations and real-time factors,
the objective proxies, per-side scores), which it shows after the reveal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bench_py import documents
from bench_py.documents.models import Correction, Measurements, MemoryAvailable, Record, Verdict
from bench_py.judge import listening
from bench_py.judge import session as sessions
from bench_py.judge.verdict import SealError, VerdictNameError, check_verdict_name, decide_from_files
from bench_py.results.plots import Plot, Series, cdf, render
from bench_py.results.retrospective import retrospective

REPORT_NAME = "report.html"


class ReportError(ValueError):
    """The run's files cannot give a report (missing, invalid, or a verdict that does not recompute)."""


@dataclass(frozen=True)
class RunFiles:
    """A run's files, read and validated: the documents as their models; the answers as the
    records the session classifies (``session.classify``), with their byte offsets."""

    run_dir: Path
    measurements: Measurements
    stored_verdict: Verdict | None
    score_lines: list[tuple[int, int, dict[str, Any]]]  # (start, end byte offset, record)
    corrections: list[Correction]
    session: dict[str, Any] | None
    listeners: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    proxies: dict[str, Any] | None = None

    @property
    def names(self) -> tuple[str, str]:
        return self.measurements.candidate.name, self.measurements.incumbent.name


def load(run_dir: Path) -> RunFiles:
    run_dir = Path(run_dir)
    path = run_dir / documents.FILE_NAMES["measurements"]
    if not path.is_file():
        raise ReportError(f"{path} is missing: not a finished run directory")
    try:
        measurements = documents.load_measurements(path)
        verdict_path = run_dir / documents.FILE_NAMES["verdict"]
        stored = documents.load_verdict(verdict_path) if verdict_path.is_file() else None
        score_lines = list(documents.iter_records_at("scores", run_dir / documents.FILE_NAMES["scores"]))
        corrections = documents.load_corrections(run_dir / documents.FILE_NAMES["corrections"])
    except documents.RunFileError as error:
        raise ReportError(str(error)) from None
    session_path = run_dir / sessions.SCORING_DIR / sessions.SESSION
    session = json.loads(session_path.read_text()) if session_path.is_file() else None
    seal_error = sessions.scores_seal_error(session, run_dir / documents.FILE_NAMES["scores"])
    if seal_error:
        raise ReportError(seal_error)
    proxies_path = run_dir / "proxies.json"
    proxies = json.loads(proxies_path.read_text()) if proxies_path.is_file() else None
    run = RunFiles(
        run_dir, measurements, stored, score_lines, corrections, session, sessions.read_listeners(run_dir), proxies
    )
    try:
        for number, correction in enumerate(corrections, start=1):
            for key, name in (("verdict", correction.verdict), ("retracts", correction.retracts)):
                if name is not None:
                    check_verdict_name(name, *run.names, what=f"corrections line {number} {key}")
    except VerdictNameError as error:
        raise ReportError(str(error)) from None
    return run


def is_sealed(run: RunFiles) -> bool:
    """Whether the blind must still be kept (:func:`bench_py.results.figures.blind_pending`)."""
    from bench_py.results.figures import blind_pending

    return blind_pending(run.run_dir, run.measurements)


def classified(run: RunFiles) -> sessions.Classified:
    """The run's answers: those that count (joined with their sides once revealed) and the refused."""
    return sessions.classify(run.session, run.listeners, run.score_lines)


VERDICT_INPUTS = ("measurements.json", "scores.jsonl", "scoring/session.json", "scoring/listeners.json")


def verdict_inputs(run_dir: Path) -> dict[str, str | None]:
    """The sha256 of every file the verdict is derived from (None: absent)."""
    out: dict[str, str | None] = {}
    for name in VERDICT_INPUTS:
        path = Path(run_dir) / name
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return out


def derive(run: RunFiles) -> dict[str, Any]:
    """The verdict the files give now, with the listening statistics and the inputs' hashes."""
    answers = classified(run)
    try:
        verdict = decide_from_files(run.measurements, answers.counted)
    except SealError as error:
        raise ReportError(str(error)) from None
    statistics_ = listening.summarize(answers.counted, sealed_condition(run.measurements))
    statistics_["refused"] = {"count": len(answers.refused), "reasons": answers.refused_reasons()}
    return {**verdict, "statistics": statistics_, "inputs": verdict_inputs(run.run_dir)}


def recompute_verdict(run: RunFiles) -> dict[str, Any]:
    """The verdict from the files. A stored verdict derived from these very inputs must agree
    (a mismatch is an error, never overwritten); one derived from older inputs (scores given or
    a session revealed since) is stale, and the caller writes the new one."""
    verdict = derive(run)
    stored = run.stored_verdict
    if stored is not None:
        try:
            check_verdict_name(stored.verdict, *run.names, what="verdict.json's verdict")
        except VerdictNameError as error:
            raise ReportError(str(error)) from None
    if stored is not None and stored.inputs == verdict["inputs"]:
        keys = ("verdict", "row", "reason", "rule_sha256")
        before = {
            "verdict": stored.verdict,
            "row": stored.row,
            "reason": stored.reason,
            "rule_sha256": stored.rule_sha256,
        }
        fresh = {k: verdict.get(k) for k in keys}
        if before != fresh:
            raise ReportError(
                f"verdict.json says {before['verdict']} (row {before['row']}) but the files give "
                f"{fresh['verdict']} (row {fresh['row']}): {fresh['reason']}"
            )
    return verdict


def write_verdict(run_dir: Path) -> dict[str, Any]:
    """Derive verdict.json from the run's files (validated, atomic); refuses a tampered one."""
    verdict = recompute_verdict(load(run_dir))
    documents.write("verdict", Path(run_dir) / documents.FILE_NAMES["verdict"], verdict)
    return verdict


def _timed(records: list[Record]) -> list[Record]:
    return [r for r in records if not r.warmup and r.ok]


def _records(m: Measurements) -> dict[str, list[Record]]:
    return (m.bench.records if m.bench else None) or {}


def _metric(record: Record, metric: str) -> float | None:
    """A latency figure of a request by name (the sealed rule's ``ttfa_metric``)."""
    value: float | None = getattr(record, metric, None)
    return value


def ttfa_cdf_plot(m: Measurements, metric: str) -> Plot:
    series = []
    for side, records in sorted(_records(m).items()):
        for condition in sorted({r.condition for r in records}):
            values = [
                value for r in _timed(records) if r.condition == condition and (value := _metric(r, metric)) is not None
            ]
            if values:
                series.append(Series(f"{side} {condition}", cdf(values), step=True, dashed=condition == "preset"))
    return Plot("ttfa-cdf", f"{metric} CDF per engine and voice condition", f"{metric} (ms)", "fraction", series)


def latency_plot(m: Measurements) -> Plot:
    series = []
    for side, records in sorted(_records(m).items()):
        for condition in sorted({r.condition for r in records}):
            chosen = (r for r in _timed(records) if r.condition == condition)
            timed = sorted(chosen, key=lambda r: (r.utterance, r.repetition))
            if timed:
                points = [(float(r.utterance), r.total_ms) for r in timed]
                series.append(Series(f"{side} {condition}", points, markers=True, dashed=condition == "preset"))
    return Plot(
        "latency-per-utterance",
        "total latency per utterance (every timed request)",
        "utterance",
        "total (ms)",
        series,
        y_min=0.0,
    )


def typical_stream(m: Measurements, condition: str) -> Record | None:
    """The candidate's request whose total latency is the median of its condition (lowest index on ties)."""
    timed = [r for r in _timed(_records(m).get("candidate", [])) if r.condition == condition and r.arrivals]
    if not timed:
        return None
    median = statistics.median_low([r.total_ms for r in timed])
    return next(r for r in timed if r.total_ms == median)


def chunk_plot(m: Measurements, condition: str) -> Plot:
    record = typical_stream(m, condition)
    series, note, extra = [], "", {}
    if record is not None:
        total, points = 0, []
        for ms, samples in record.arrivals or []:
            total += samples
            points.append((ms, total / record.sample_rate))
        series.append(Series("candidate audio received", points, step=True, markers=True))
        note = f"utterance {record.utterance}, repetition {record.repetition}: the median total latency"
        extra = {"utterance": record.utterance, "repetition": record.repetition}
    return Plot(
        "chunk-timeline",
        f"chunk timeline of a typical candidate stream ({condition})",
        "ms since the request",
        "audio received (s)",
        series,
        note=note,
        extra=extra,
    )


def cotenant_plot(m: Measurements) -> Plot:
    baseline = m.baseline
    teardown = (m.teardown.postflight if m.teardown else None) or {}
    cotenant = documents.dump(m.cotenant) if m.cotenant else {}
    groups: list[tuple[str, list[dict[str, Any]]]] = [("BASELINE", (baseline.samples if baseline else None) or [])]
    for gate in cotenant.get("gate") or []:
        groups.append((gate["phase"], gate.get("probes") or []))
    groups.append(("TEARDOWN", teardown.get("samples") or []))
    stamps = [s["at_s"] for _, samples in groups for s in samples if s.get("at_s") is not None]
    origin = min(stamps) if stamps else 0.0
    points: list[tuple[float, float]] = []  # (s since the first probe, latency ms)
    bands: list[tuple[float, float, str]] = []  # (start s, end s, phase)
    for phase, samples in groups:
        times = [s["at_s"] - origin for s in samples if s.get("at_s") is not None]
        points.extend((s["at_s"] - origin, s["latency_ms"]) for s in samples if s.get("latency_ms") is not None)
        if times:
            bands.append((min(times), max(times), phase))
    hlines = []
    base_p50 = baseline.latency_ms.p50 if baseline and baseline.latency_ms else None
    if base_p50:
        gates = cotenant.get("gate") or []
        hlines.append((base_p50, "baseline p50"))
        if gates:
            hlines.append((base_p50 * gates[0]["max_ratio"], f"abort {gates[0]['max_ratio']:g}x"))
        if teardown.get("max_ratio"):
            hlines.append((base_p50 * teardown["max_ratio"], f"post-flight {teardown['max_ratio']:g}x"))
    return Plot(
        "cotenant-latency",
        "co-tenant latency over the run",
        "s since the first baseline probe",
        "latency (ms)",
        [Series("co-tenant", sorted(points), markers=True)],
        hlines,
        bands,
        y_min=0.0,
    )


def memory_plots(m: Measurements) -> list[Plot]:
    if m.bench is None:
        return []
    memory = m.bench.memory
    plots = []
    for name, source in sorted(memory.sources.items()):
        if isinstance(source, MemoryAvailable) and source.timeline:
            points = [tuple(p) for p in source.timeline]
            plots.append(
                Plot(
                    f"memory-{name}",
                    f"memory over BENCHING, source {name}",
                    "s since sampling began",
                    source.unit,
                    [Series(name, points)],
                    note=f"{memory.extra('scope', '')}; peak {source.peak} {source.unit}",
                )
            )
    return plots


def score_plot(summary: dict[str, Any]) -> Plot:
    series = [
        Series(side, [(float(k), float(c)) for k, c in zip(range(1, 6), counts, strict=True)], markers=True)
        for side, counts in sorted(summary["distribution"].items())
        if sum(counts)
    ]
    return Plot(
        "score-distribution",
        f"listening scores ({summary['condition']} condition)",
        "score",
        "answers",
        series,
        y_min=0.0,
    )


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bench_py.results", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def context(run: RunFiles, verdict: dict[str, Any]) -> dict[str, Any]:
    """What the template shows; ``verdict`` is the one :func:`recompute_verdict` just derived
    (with its listening statistics), not computed a second time here."""
    m = run.measurements
    rule = documents.dump(m.preflight.rule) if m.preflight else {}
    condition = (rule.get("thresholds") or {}).get("voice_condition", "cloned")
    metric = (rule.get("thresholds") or {}).get("ttfa_metric", "ttfa_ms")
    answers = classified(run)
    listening_summary = verdict["statistics"]
    sealed = is_sealed(run)
    if sealed:  # per-request figures carry audio lengths, which would name the clips' engines
        plots = [cotenant_plot(m), *memory_plots(m)]
    else:
        plots = [ttfa_cdf_plot(m, metric), latency_plot(m), chunk_plot(m, condition), cotenant_plot(m)]
        plots += memory_plots(m)
        if any(listening_summary["n"].values()):
            plots.append(score_plot(listening_summary))
    from bench_py.results.figures import figures_from

    return {  # the template reads plain JSON: the documents go to it as they are in the files
        "m": documents.dump(m),
        "sealed": sealed,
        "facts": figures_from(m, verdict, str(run.run_dir.name), sealed=sealed),
        "verdict": verdict,
        "rule": rule,
        "listening": listening_summary,
        "session": run.session,
        "listeners": run.listeners,
        "corrections": [documents.dump(correction) for correction in run.corrections],
        "retrospective": retrospective(m, answers.counted, run.session, refused=len(answers.refused)),
        "plots": [{"plot": p, "svg": render(p), "data": p.data()} for p in plots],
        "paths": [documents.dump(path) for path in (m.install_paths.paths if m.install_paths else [])],
        "proxies": None if sealed else run.proxies,
    }


def refresh_verdict(run_dir: Path) -> dict[str, Any]:
    """After new scores or a reveal: derive verdict.json again from the files, then the report."""
    _, verdict = build(run_dir)
    return verdict


def sealed_condition(m: Measurements) -> str:
    thresholds = (m.preflight.rule.thresholds if m.preflight else None) or {}
    condition: str = thresholds.get("voice_condition", "cloned")
    return condition


def render_report(run: RunFiles, verdict: dict[str, Any]) -> str:
    return _environment().get_template("report.html.j2").render(**context(run, verdict))


def build(run_dir: Path, out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the report (atomically) and return its path and the recomputed verdict. A stale
    verdict.json (its inputs changed since) is derived again first; a tampered one is an error."""
    run = load(run_dir)
    verdict = recompute_verdict(run)
    if run.stored_verdict is None or documents.dump(run.stored_verdict) != verdict:
        documents.write("verdict", Path(run_dir) / documents.FILE_NAMES["verdict"], verdict)
        run = dataclasses.replace(run, stored_verdict=Verdict.model_validate(verdict))
    text = render_report(run, verdict)
    target = Path(out) if out else Path(run_dir) / REPORT_NAME
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target, verdict
