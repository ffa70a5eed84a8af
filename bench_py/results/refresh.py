"""A collected run's report rebuilt on the controller (``voxbench report``, ``report.yml``, the
collector): optionally sealed and given its objective proxies first. Apart from the report itself
because the proxies' ASR stack is the controller's: the GPU host writes the report (its phases
import :mod:`bench_py.results.report`) without ever reaching it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_py.results.figures import figures, summary_lines
from bench_py.results.report import REPORT_NAME, build


@dataclass(frozen=True)
class Refreshed:
    """A collected run's report rebuilt: its headline figures, summary lines, where the report is."""

    facts: dict[str, Any]
    summary: list[str]
    report: Path
    changed: bool


def refresh(run_dir: Path, *, proxies: bool = False, seal: bool = False, dry_run: bool = False) -> Refreshed:
    """Rebuild a run's report and derive its verdict again from its files alone (what ``voxbench
    report``, ``report.yml`` and the collector do); ``seal`` first seals the listening session,
    ``proxies`` first computes the objective proxies when the run has none. ``dry_run`` writes
    nothing and reads the figures (Ansible's check mode)."""
    run_dir = Path(run_dir)
    report = run_dir / REPORT_NAME
    before = report.read_bytes() if report.is_file() else None
    figures(run_dir)  # a missing or invalid measurements file fails here, naming it
    if not dry_run:
        if seal:
            from bench_py.results.publish import seal_session

            seal_session(run_dir)
        if proxies and not (run_dir / "proxies.json").is_file():
            from bench_py.judge import proxies as objective

            objective.write(run_dir)
        report, _ = build(run_dir)  # derives verdict.json again when its inputs changed
    facts = figures(run_dir)
    changed = not dry_run and report.read_bytes() != before
    return Refreshed(facts, summary_lines(facts), report, changed)
