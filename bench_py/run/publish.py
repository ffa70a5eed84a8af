"""Report, then branch: what `voxbench publish`, the collector and score.yml share."""

from __future__ import annotations

from pathlib import Path

from bench_py.run import report
from bench_py.run.artifacts import Publication, publish
from bench_py.run.results import figures_from, summary_markdown


def publish_run(
    run_dir: Path, repo: Path, *, remote: str = "origin", base: str = "main", push: bool = True
) -> Publication:
    """Rebuild the report (recomputing the verdict), then commit the run on its benchmark branch."""
    run_dir = Path(run_dir)
    _, verdict = report.build(run_dir)
    run = report.load(run_dir)
    facts = figures_from(run.measurements, verdict, str(run_dir))
    return publish(
        repo,
        run_dir,
        candidate=run.measurements["candidate"]["name"],
        summary=summary_markdown(facts, run.measurements),
        verdict=verdict["verdict"],
        remote=remote,
        base=base,
        push=push,
    )
