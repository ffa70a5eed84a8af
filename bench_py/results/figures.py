"""A collected run's headline figures (as Ansible facts) and its one-screen summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_py import documents
from bench_py.documents.models import Measurements


class ResultsError(ValueError):
    """The run directory lacks what a finished run leaves; the message names the file."""


def _p50(summary: dict[str, Any], key: str) -> float | None:
    return (summary.get(key) or {}).get("p50")


def figures(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "measurements.json"
    if not path.is_file():
        raise ResultsError(f"{path} is missing: the run did not finish writing its measurements")
    measurements = documents.load_measurements(path)
    verdict_path = run_dir / "verdict.json"
    verdict = json.loads(verdict_path.read_text()) if verdict_path.is_file() else {}
    return figures_from(measurements, verdict, str(run_dir), sealed=blind_pending(run_dir, measurements))


def blind_pending(run_dir: Path, measurements: Measurements) -> bool:
    """Whether the run's blind must still be kept: it saved takes and its listening session is not
    revealed yet, or these files are the sealed view published before the reveal."""
    from bench_py.judge import pairing
    from bench_py.judge import session as sessions

    if measurements.extra("sealed_view"):
        return True
    path = Path(run_dir) / sessions.SCORING_DIR / sessions.SESSION
    if path.is_file():
        return "revealed_mapping" not in json.loads(path.read_text())
    return pairing.has_takes(Path(run_dir), measurements)


def figures_from(
    measurements: Measurements, verdict: dict[str, Any], run_dir: str, *, sealed: bool = False
) -> dict[str, Any]:
    """The headline figures of measurements already read (and the verdict, if there is one).
    ``sealed``: the listening session is not revealed yet; the one-screen summary then leaves
    out real-time factors (with the clips' lengths they would tell the engines apart)."""
    m = measurements
    bench = m.bench
    sides: dict[str, Any] = {}
    for side, conditions in ((bench.summary if bench else None) or {}).items():
        sides[side] = {
            condition: {
                "requests": s["requests"],
                "ok": s["ok"],
                "timeouts": s["timeouts"],
                "ttfa_ms_p50": _p50(s, "ttfa_ms"),
                "ttfb_ms_p50": _p50(s, "ttfb_ms"),
                "total_ms_p50": _p50(s, "total_ms"),
                "rtf_p50": _p50(s, "rtf"),
            }
            for condition, s in conditions.items()
        }
    baseline_p50 = m.baseline.latency_ms.p50 if m.baseline and m.baseline.latency_ms else None
    postflight = (m.teardown.postflight if m.teardown else None) or {}
    removal = (m.teardown.removal if m.teardown else None) or {}
    rule = m.preflight.rule if m.preflight else None
    return {
        "run_id": m.run_id,
        "run_dir": run_dir,
        "sealed": sealed,
        "final_state": m.final_state,
        "reason": m.reason,
        "verdict": verdict.get("verdict"),
        "verdict_reason": verdict.get("reason"),
        "verdict_detail": {k: v for k, v in verdict.items() if k != "inputs"},
        "utterances": [{"id": i, "text": t} for i, t in enumerate((bench.utterances if bench else None) or [])],
        "rule": rule.thresholds if rule else None,
        "rule_sha256": rule.sha256 if rule else None,
        "gemma_mode": m.gemma_mode,
        "sides": sides,
        "phase3_passed": bench.phase3_passed if bench else None,
        "cotenant": {
            "baseline_p50_ms": baseline_p50,
            "postflight_p50_ms": postflight.get("p50_ms"),
            "postflight_ratio": postflight.get("ratio"),
        },
        "kernel_errors": m.teardown.extra("kernel_errors") if m.teardown else None,
        "containers_removed": removal.get("removed", []),
        "containers_remaining": removal.get("remaining", []),
        "standins": {"candidate": m.candidate.standin, "incumbent": m.incumbent.standin},
    }


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def summary_lines(facts: dict[str, Any]) -> list[str]:
    lines = [
        f"run       {facts['run_id']}  ({facts['final_state']}, gemma_mode={facts['gemma_mode']})",
        f"verdict   {facts['verdict']}: {facts['verdict_reason']}",
    ]
    if facts.get("reason") and facts["final_state"] != "DONE":
        lines.append(f"reason    {facts['reason']}")
    cot = facts["cotenant"]
    ratio = cot.get("postflight_ratio")
    lines.append(
        f"co-tenant baseline p50 {_ms(cot.get('baseline_p50_ms'))}, after teardown "
        f"{_ms(cot.get('postflight_p50_ms'))}" + (f" ({ratio:.2f}x)" if ratio else "")
    )
    for side, conditions in facts["sides"].items():
        tag = " [stand-in]" if facts["standins"].get(side) else ""
        for condition, s in conditions.items():
            rtf = "—" if s["rtf_p50"] is None else f"{s['rtf_p50']:.2f}"
            if facts.get("sealed"):
                rtf = "blind"  # until the reveal
            lines.append(
                f"{side:<10}{condition:<8} TTFA p50 {_ms(s['ttfa_ms_p50']):>8}  total p50 "
                f"{_ms(s['total_ms_p50']):>8}  RTF p50 {rtf:>5}  ok {s['ok']}/{s['requests']}"
                f"  timeouts {s['timeouts']}{tag}"
            )
    lines.append(
        f"teardown  removed {len(facts['containers_removed'])} container(s), {len(facts['containers_remaining'])} left"
    )
    kernel = facts.get("kernel_errors")
    if kernel:
        lines.append(f"kernel    {kernel['errors']} kernel error(s) in the engine's log: {kernel['file']}")
    lines.append(f"files     {facts['run_dir']}")
    return lines


def summary_markdown(facts: dict[str, Any], measurements: Measurements) -> str:
    """SUMMARY.md on the benchmark branch: the verdict, headline figures, the path that worked."""
    install = measurements.install_paths
    statuses = ", ".join(f"{p.install_path} {p.status}" for p in (install.paths if install else [])) or "none tried"
    sealed_note = (
        ["", "Sealed for blind listening: per-request figures, audio lengths and the proxies follow the reveal."]
        if facts.get("sealed")
        else []
    )
    lines = [
        f"# {measurements.candidate.name} vs {measurements.incumbent.name}: {facts['verdict']}",
        *sealed_note,
        "",
        f"- run: `{facts['run_id']}` ({facts['final_state']}, gemma_mode={facts['gemma_mode']})",
        f"- verdict: **{facts['verdict']}**: {facts['verdict_reason']}",
        f"- install path that worked: {(install.selected if install else None) or 'none'} (tried: {statuses})",
        f"- rule sealed at PREFLIGHT: sha256 `{facts['rule_sha256']}`",
        "",
        "```",
        *summary_lines({**facts, "run_dir": f"docs/{facts['run_id']}/"}),
        "```",
        "",
        f"Open `docs/{facts['run_id']}/report.html` for the plots; `voxbench report docs/{facts['run_id']}` "
        "recomputes the verdict and rebuilds it from the files on this branch.",
        "",
    ]
    return "\n".join(lines)
