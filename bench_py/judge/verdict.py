"""The verdict: DESIGN.md's table, first applicable row wins. Derived, recomputable."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from bench_py.config.model import Config, Rule
from bench_py.documents.models import Bench, Measurements

UNSUPPORTED = frozenset({"unsupported", "disallowed_by_vendor"})


class SealError(ValueError):
    """The rule recorded in the measurements does not match the hash sealed at PREFLIGHT."""


class VerdictNameError(ValueError):
    """A verdict name that DESIGN's table cannot give for this run (a typo, another run's names)."""


def verdict_names(candidate: str, incumbent: str) -> tuple[str, ...]:
    """The verdicts DESIGN's eight rows can give, with this run's engine names, in row order."""
    return (
        "inconclusive",
        f"keep_{incumbent}_{candidate}_tts_unsupported_upstream",
        "aarch64_vllm_omni_unverified",
        f"keep_{incumbent}",
        "pending_listening",
        "swap_candidate",
    )


def check_verdict_name(name: str, candidate: str, incumbent: str, what: str = "verdict") -> str:
    """``name`` when the table can give it for this run; otherwise an error listing those it can."""
    allowed = verdict_names(candidate, incumbent)
    if name not in allowed:
        raise VerdictNameError(f"{what} {name!r} is not one of this run's verdicts: {', '.join(allowed)}")
    return name


def candidate_ttfa_p50(bench: Bench | None, rule: Rule) -> tuple[float | None, str]:
    """The candidate's TTFA p50 at the sealed rule's concurrency, and where it comes from.

    Concurrency 1 is the timed loop (one request at a time, the rule's voice condition); a higher
    one is the load sweep's level of that concurrency. Nothing else stands in for it: when that
    level was not measured (or not for the rule's metric) the figure is None and the source says
    why, so the rule cannot pass on a figure taken at another concurrency."""
    metric, concurrency = rule.ttfa_metric, rule.ttfa_concurrency
    if concurrency == 1:
        summary = ((bench.summary if bench else None) or {}).get("candidate", {}).get(rule.voice_condition, {})
        p50 = (summary.get(metric) or {}).get("p50")
        where = f"the timed loop at concurrency 1, {rule.voice_condition} condition"
        return p50, where if p50 is not None else f"not measured: no {metric} p50 in {where}"
    load = (bench.extra("load") if bench else None) or {}
    levels = (load.get("sweep") or {}).get("levels") or []
    level = next((lv for lv in levels if lv.get("concurrency") == concurrency), None)
    if level is None:
        measured = sorted(lv.get("concurrency") for lv in levels)
        return None, f"not measured at concurrency {concurrency}: the load sweep measured {measured or 'nothing'}"
    p50 = (level.get(metric) or {}).get("p50")
    if p50 is None:
        return None, f"not measured: the load sweep's level {concurrency} has no {metric} p50"
    return p50, f"the load sweep at concurrency {concurrency} (the sweep's sentence, preset voice)"


def sealed_rule(measurements: Measurements) -> Rule:
    """The rule as sealed at PREFLIGHT, re-hashed: a file edited after the fact is refused."""
    if measurements.preflight is None:
        raise SealError("the measurements carry no sealed rule (preflight.rule.thresholds)")
    sealed = measurements.preflight.rule
    rule = Rule.model_validate(sealed.thresholds)
    again = rule.seal(measurements.candidate.name, measurements.incumbent.name)
    if again["sha256"] != sealed.sha256:
        raise SealError(
            f"the sealed rule's hash {sealed.sha256} does not match its thresholds and text "
            f"(they hash to {again['sha256']}): the rule was changed after PREFLIGHT"
        )
    return rule


def decide_from_files(measurements: Measurements, scores: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Recompute the verdict from a run's files alone (the rule comes from the sealed record).
    ``scores`` are the answers that count, joined with their sides (``session.classify``)."""
    if measurements.preflight is None and measurements.aborted:
        # Aborted before the rule was sealed: row 1 needs no rule.
        reason = f"the run ended ERROR_ABORTED: {measurements.reason}"
        return {"verdict": "inconclusive", "row": 1, "reason": reason, "rule_sha256": None, "evidence": {}}
    rule = sealed_rule(measurements)
    return decide_with(measurements, rule, measurements.candidate.name, measurements.incumbent.name, scores)


def decide(measurements: Measurements, config: Config, scores: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Apply the configured rule's table to a run's measurements (and scores, when there are any)."""
    return decide_with(measurements, config.rule, config.candidate.name, config.incumbent.name, scores)


def decide_with(
    measurements: Measurements,
    rule: Rule,
    candidate: str,
    incumbent: str,
    scores: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """DESIGN.md's table, first applicable row wins."""
    bench = measurements.bench
    install = measurements.install_paths
    paths = install.paths if install else []
    sealed = measurements.preflight.rule.sha256 if measurements.preflight else None

    def verdict(name: str, row: int, reason: str, **evidence: Any) -> dict[str, Any]:
        return {"verdict": name, "row": row, "reason": reason, "rule_sha256": sealed, "evidence": evidence}

    if measurements.aborted:
        return verdict("inconclusive", 1, f"the run ended ERROR_ABORTED: {measurements.reason}")
    fraction = bench.candidate_timeout_fraction if bench else None
    if fraction is not None and fraction >= rule.max_timeout_fraction:
        return verdict(
            "inconclusive", 1, f"{fraction:.0%} of the candidate's timed requests timed out", timeout_fraction=fraction
        )
    reached = install.selected if install else None
    if not reached:
        statuses: dict[str, str] = {p.install_path: p.status for p in paths}
        if statuses and set(statuses.values()) <= UNSUPPORTED:
            return verdict(
                verdict_names(candidate, incumbent)[1],
                2,
                "every install path is unsupported upstream",
                paths=statuses,
            )
        return verdict("inconclusive", 3, "no install path reached BENCHING", paths=statuses)
    selected = next(p for p in paths if p.install_path == reached)
    if not selected.streaming_capable:
        return verdict("aarch64_vllm_omni_unverified", 4, "only non-streaming install paths worked")
    if selected.extra("cloning") == "preset_substitute":
        return verdict(f"keep_{incumbent}", 5, "cloning_unsupported")
    real = [s for s in scores or [] if not s.get("simulated") and s.get("condition") == rule.voice_condition]
    per_side = {side: [float(s["score"]) for s in real if s.get("side") == side] for side in ("candidate", "incumbent")}
    given = min(len(v) for v in per_side.values())
    if given < rule.min_scores:
        evidence: dict[str, Any] = {"scores": {side: len(v) for side, v in per_side.items()}}
        owed = bench.extra("deferred_incumbent") if bench else None
        if owed and bench:  # in the evidence: a stored verdict's reason must read the same as before
            evidence["deferred_incumbent"] = {
                "takes": len(owed),
                "reason": bench.extra("deferred_reason"),
                "resume": f"voxbench baseline resume {measurements.run_id}",
            }
        reason = f"{given} of {rule.min_scores} listening scores per side given"
        return verdict("pending_listening", 6, reason, **evidence)
    # Exact arithmetic: scores are integers, so "difference exactly 0.5" must not fall to rounding.
    exact = {side: Fraction(sum(Fraction(x) for x in v), len(v)) for side, v in per_side.items()}
    means = {side: float(value) for side, value in exact.items()}
    ttfa_p50, ttfa_source = candidate_ttfa_p50(bench, rule)
    evidence = {
        "means": means,
        f"candidate_{rule.ttfa_metric}_p50": ttfa_p50,
        "ttfa_concurrency": rule.ttfa_concurrency,
        "ttfa_source": ttfa_source,
    }
    margin_met = exact["candidate"] >= exact["incumbent"] + Fraction(str(rule.min_mean_margin))
    fast_enough = ttfa_p50 is not None and ttfa_p50 <= rule.ttfa_p50_max_ms
    if margin_met and fast_enough:
        return verdict(
            "swap_candidate", 7, "the candidate clones better by the margin and starts audio fast enough", **evidence
        )
    unmet = []
    if not margin_met:
        unmet.append(f"its mean is not {rule.min_mean_margin:g} above the incumbent's")
    if ttfa_p50 is None:
        unmet.append(f"its {rule.ttfa_metric} p50 at concurrency {rule.ttfa_concurrency} is {ttfa_source}")
    elif not fast_enough:
        unmet.append(
            f"its {rule.ttfa_metric} p50 at concurrency {rule.ttfa_concurrency} is above {rule.ttfa_p50_max_ms:g} ms"
        )
    reason = "the candidate did not meet both conditions of the rule: " + "; ".join(unmet)
    return verdict(f"keep_{incumbent}", 8, reason, **evidence)
