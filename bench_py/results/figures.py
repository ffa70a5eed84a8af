"""A collected run's headline figures (as Ansible facts) and its one-screen summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_py import documents


class ResultsError(ValueError):
    """The run directory lacks what a finished run leaves; the message names the file."""


def _p50(summary: dict[str, Any], key: str) -> float | None:
    return (summary.get(key) or {}).get("p50")


def figures(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "measurements.json"
    if not path.is_file():
        raise ResultsError(f"{path} is missing: the run did not finish writing its measurements")
    measurements = documents.read("measurements", path)
    verdict_path = run_dir / "verdict.json"
    verdict = json.loads(verdict_path.read_text()) if verdict_path.is_file() else {}
    return figures_from(measurements, verdict, str(run_dir), sealed=blind_pending(run_dir, measurements))


def blind_pending(run_dir: Path, measurements: dict[str, Any]) -> bool:
    """Whether the run's blind must still be kept: it saved takes and its listening session is not
    revealed yet, or these files are the sealed view published before the reveal."""
    from bench_py.judge import pairing
    from bench_py.judge import session as sessions

    if measurements.get("sealed_view"):
        return True
    path = Path(run_dir) / sessions.SCORING_DIR / sessions.SESSION
    if path.is_file():
        return "revealed_mapping" not in json.loads(path.read_text())
    return pairing.has_takes(Path(run_dir), measurements)


def figures_from(
    measurements: dict[str, Any], verdict: dict[str, Any], run_dir: str, *, sealed: bool = False
) -> dict[str, Any]:
    """The headline figures of measurements already read (and the verdict, if there is one).
    ``sealed``: the listening session is not revealed yet; the one-screen summary then leaves
    out real-time factors (with the clips' lengths they would tell the engines apart)."""
    bench = measurements.get("bench") or {}
    sides: dict[str, Any] = {}
    for side, conditions in (bench.get("summary") or {}).items():
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
    baseline = (measurements.get("baseline") or {}).get("latency_ms") or {}
    postflight = (measurements.get("teardown") or {}).get("postflight") or {}
    removal = (measurements.get("teardown") or {}).get("removal") or {}
    return {
        "run_id": measurements["run_id"],
        "run_dir": run_dir,
        "sealed": sealed,
        "final_state": measurements["final_state"],
        "reason": measurements.get("reason"),
        "verdict": verdict.get("verdict"),
        "verdict_reason": verdict.get("reason"),
        "verdict_detail": {k: v for k, v in verdict.items() if k != "inputs"},
        "utterances": [{"id": i, "text": t} for i, t in enumerate(bench.get("utterances") or [])],
        "rule": ((measurements.get("preflight") or {}).get("rule") or {}).get("thresholds"),
        "rule_sha256": ((measurements.get("preflight") or {}).get("rule") or {}).get("sha256"),
        "gemma_mode": measurements["gemma_mode"],
        "sides": sides,
        "phase3_passed": bench.get("phase3_passed"),
        "cotenant": {
            "baseline_p50_ms": baseline.get("p50"),
            "postflight_p50_ms": postflight.get("p50_ms"),
            "postflight_ratio": postflight.get("ratio"),
        },
        "kernel_errors": (measurements.get("teardown") or {}).get("kernel_errors"),
        "containers_removed": removal.get("removed", []),
        "containers_remaining": removal.get("remaining", []),
        "standins": {
            "candidate": measurements["candidate"]["standin"],
            "incumbent": measurements["incumbent"]["standin"],
        },
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


def summary_markdown(facts: dict[str, Any], measurements: dict[str, Any]) -> str:
    """SUMMARY.md on the benchmark branch: the verdict, headline figures, the path that worked."""
    install = measurements.get("install_paths") or {}
    statuses = ", ".join(f"{p['install_path']} {p['status']}" for p in install.get("paths", [])) or "none tried"
    sealed_note = (
        ["", "Sealed for blind listening: per-request figures, audio lengths and the proxies follow the reveal."]
        if facts.get("sealed")
        else []
    )
    lines = [
        f"# {measurements['candidate']['name']} vs {measurements['incumbent']['name']}: {facts['verdict']}",
        *sealed_note,
        "",
        f"- run: `{facts['run_id']}` ({facts['final_state']}, gemma_mode={facts['gemma_mode']})",
        f"- verdict: **{facts['verdict']}**: {facts['verdict_reason']}",
        f"- install path that worked: {install.get('selected') or 'none'} (tried: {statuses})",
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
