"""The retrospective: for each safeguard, whether it fired and what it saw, from the run's files.

The people who planned this benchmark by hand filled in this table after each run. HIT: the
safeguard ran and did its job (it fired when it had to, or watched throughout and held). PARTIAL:
it ran for part of the run only. MISS: it should have acted and the files show it did not.
N/A: nothing in this run exercised it.
"""

from __future__ import annotations

from typing import Any

from bench_py import documents
from bench_py.documents.models import Check, Measurements

HIT, MISS, PARTIAL, NA = "HIT", "MISS", "PARTIAL", "N/A"


def _row(safeguard: str, status: str, saw: str) -> dict[str, str]:
    return {"safeguard": safeguard, "status": status, "saw": saw}


def _gate(m: Measurements) -> dict[str, str]:
    name = "co-tenant gate"
    gates = (documents.dump(m.cotenant) if m.cotenant else {}).get("gate") or []
    if m.gemma_mode == "pause-gemma":
        return _row(name, NA, "pause-gemma: the co-tenant was stopped during the measurements")
    if not gates:
        reached = {h.to for h in m.history}
        if "STARTING" not in reached:
            return _row(name, NA, "the run ended before STARTING")
        return _row(name, MISS, "the candidate ran but no gate probe was recorded")
    tripped = [g for g in gates if g.get("tripped")]
    probes = sum(len(g.get("probes") or []) for g in gates)
    worst = max(
        (p["latency_ms"] / g["baseline_p50_ms"] for g in gates for p in g.get("probes") or [] if p.get("latency_ms")),
        default=None,
    )
    worst_text = "no probe answered" if worst is None else f"worst probe {worst:.2f}x baseline"
    if tripped:
        first = tripped[0]
        reason = (first.get("trip") or {}).get("reason") or first.get("reason", "")  # runs before the evidence: none
        return _row(name, HIT, f"tripped in {first['phase']}: {reason} ({probes} probes)".strip())
    phases = sorted({g["phase"] for g in gates})
    status = HIT if {"STARTING", "BENCHING"} <= set(phases) or m.aborted else PARTIAL
    return _row(name, status, f"{probes} probes in {', '.join(phases)}; {worst_text}, limit {gates[0]['max_ratio']:g}x")


def _ttfa(m: Measurements) -> dict[str, str]:
    name = "TTFA semantics per install path"
    install = m.install_paths
    selected = install.selected if install else None
    if not install or not selected:
        return _row(name, NA, "no install path reached BENCHING")
    path = next(p for p in install.paths if p.install_path == selected)
    records = [r for r in (m.bench.records if m.bench else {}).get("candidate", []) if not r.warmup]
    with_ttfa = sum(1 for r in records if r.ttfa_ms is not None)
    if path.streaming_capable:
        saw = f"{selected} streams: TTFA = first audio byte, {with_ttfa}/{len(records)} requests timed"
        return _row(name, HIT, saw)
    if with_ttfa:
        return _row(name, MISS, f"{selected} does not stream, yet {with_ttfa} records carry a TTFA")
    return _row(name, HIT, f"{selected} does not stream: total synthesis latency only, no TTFA claimed")


def _subtitles(m: Measurements) -> dict[str, str]:
    name = "subtitle format detection"
    extraction = (m.extra("reference") or {}).get("extraction")
    if not extraction:
        return _row(name, NA, "the reference clip did not come from a subtitle extraction recorded in this run")
    return _row(name, HIT, f"format {extraction.get('format')}: {extraction.get('reason', '')}")


def _teardown(m: Measurements) -> dict[str, str]:
    name = "deterministic teardown"
    removal = m.teardown.removal if m.teardown else None
    if not removal:
        return _row(name, NA, "nothing was started")
    if removal.get("verified") and not removal.get("remaining"):
        return _row(name, HIT, f"removed {len(removal.get('removed', []))} container(s); inspect confirms none left")
    return _row(name, MISS, f"left {removal.get('remaining')}; errors {removal.get('errors')}")


def _ssh(m: Measurements) -> dict[str, str]:
    name = "SSH-drop survival"
    controller = m.extra("controller")
    drops = controller.get("ssh_drops") if isinstance(controller, dict) else None
    if drops:
        return _row(name, HIT, f"the controller lost the host {drops} time(s); the run went on in tmux")
    return _row(name, NA, "the phases ran in the host's tmux session; no SSH drop was recorded")


def _checks(m: Measurements) -> list[Check]:
    return m.preflight.checks if m.preflight else []


def _secrets(m: Measurements) -> dict[str, str]:
    name = "secret handling"
    token = next((c for c in _checks(m) if c.name == "token_file"), None)
    if token is None:
        return _row(name, NA, "no token check recorded")
    mode = m.install_paths.extra("token_mode", "file") if m.install_paths else "file"
    if not token.ok:
        return _row(name, HIT, f"PREFLIGHT refused the token file: {token.message}")
    if mode != "file":
        return _row(name, PARTIAL, f"token passed in {mode} mode, which docker inspect shows")
    return _row(name, HIT, "token by read-only file mount; never on a command line or in an environment")


def _blind(
    m: Measurements, scores: list[dict[str, Any]], session: dict[str, Any] | None, refused: int = 0
) -> dict[str, str]:
    name = "blind scoring"
    refused_text = f"; {refused} refused answer(s) kept, never counted" if refused else ""
    if not scores:
        return _row(name, NA, f"no listening scores yet{refused_text}")
    real = [s for s in scores if not s.get("simulated")]
    session = session or {}
    sealed = session.get("mapping_sha256")
    revealed = session.get("revealed_verified")
    if sealed and revealed:
        saw = (
            f"{len(real)} blind answers counted; mapping sealed ({sealed[:12]}…) before the first answer, "
            f"verified at the reveal ({session.get('revealed_by', 'operator')}){refused_text}"
        )
        return _row(name, HIT, saw)
    if sealed:
        return _row(name, PARTIAL, f"{len(real)} answers under a sealed mapping not yet revealed{refused_text}")
    return _row(name, MISS, f"{len(scores)} scores without a sealed mapping{refused_text}")


def _deferred(m: Measurements) -> dict[str, str]:
    name = "deferred baseline"
    deferred = m.bench.extra("deferred_incumbent") if m.bench else None
    if deferred:
        return _row(name, HIT, f"{len(deferred)} incumbent clip(s) deferred: {deferred[0]}…")
    return _row(name, NA, "the incumbent answered; nothing deferred")


def _orphans(m: Measurements) -> dict[str, str]:
    name = "orphan sweep"
    check = next((c for c in _checks(m) if c.name == "orphan_sweep"), None)
    if check is None:
        return _row(name, NA, "no orphan check recorded")
    recovered = (check.extra("detail") or {}).get("recovered") or []
    if recovered:
        return _row(name, HIT, f"recovered {len(recovered)} stale run(s) at PREFLIGHT")
    status = HIT if check.ok and not check.extra("warning") else PARTIAL
    return _row(name, status, check.message)


def retrospective(
    measurements: Measurements,
    scores: list[dict[str, Any]] | None = None,
    session: dict[str, Any] | None = None,
    refused: int = 0,
) -> list[dict[str, str]]:
    """One row per safeguard, in the order the hand-run retrospective used. ``scores`` are the
    answers that count; ``refused`` how many were refused."""
    return [
        _gate(measurements),
        _ttfa(measurements),
        _subtitles(measurements),
        _teardown(measurements),
        _ssh(measurements),
        _secrets(measurements),
        _blind(measurements, scores or [], session, refused),
        _deferred(measurements),
        _orphans(measurements),
    ]
