"""The verdict: DESIGN.md's table, first applicable row wins. Derived, recomputable."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from bench_py.config.model import Config, Rule

UNSUPPORTED = frozenset({"unsupported", "disallowed_by_vendor"})


class SealError(ValueError):
    """The rule recorded in the measurements does not match the hash sealed at PREFLIGHT."""


def sealed_rule(measurements: dict[str, Any]) -> Rule:
    """The rule as sealed at PREFLIGHT, re-hashed: a file edited after the fact is refused."""
    sealed = (measurements.get("preflight") or {}).get("rule") or {}
    if "thresholds" not in sealed:
        raise SealError("the measurements carry no sealed rule (preflight.rule.thresholds)")
    rule = Rule.model_validate(sealed["thresholds"])
    names = measurements["candidate"]["name"], measurements["incumbent"]["name"]
    again = rule.seal(*names)
    if again["sha256"] != sealed.get("sha256"):
        raise SealError(
            f"the sealed rule's hash {sealed.get('sha256')} does not match its thresholds and text "
            f"(they hash to {again['sha256']}): the rule was changed after PREFLIGHT"
        )
    return rule


def decide_from_files(measurements: dict[str, Any], scores: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Recompute the verdict from a run's files alone (the rule comes from the sealed record)."""
    sealed = (measurements.get("preflight") or {}).get("rule") or {}
    if "thresholds" not in sealed and measurements.get("aborted"):
        # Aborted before the rule was sealed: row 1 needs no rule.
        reason = f"the run ended ERROR_ABORTED: {measurements.get('reason')}"
        return {"verdict": "inconclusive", "row": 1, "reason": reason, "rule_sha256": None, "evidence": {}}
    rule = sealed_rule(measurements)
    return decide_with(measurements, rule, measurements["candidate"]["name"], measurements["incumbent"]["name"], scores)


def decide(measurements: dict[str, Any], config: Config, scores: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Apply the configured rule's table to a run's measurements (and scores, when there are any)."""
    return decide_with(measurements, config.rule, config.candidate.name, config.incumbent.name, scores)


def decide_with(
    measurements: dict[str, Any],
    rule: Rule,
    candidate: str,
    incumbent: str,
    scores: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """DESIGN.md's table, first applicable row wins."""
    bench = measurements.get("bench") or {}
    paths = (measurements.get("install_paths") or {}).get("paths", [])
    sealed = ((measurements.get("preflight") or {}).get("rule") or {}).get("sha256")

    def verdict(name: str, row: int, reason: str, **evidence: Any) -> dict[str, Any]:
        return {"verdict": name, "row": row, "reason": reason, "rule_sha256": sealed, "evidence": evidence}

    if measurements.get("aborted"):
        return verdict("inconclusive", 1, f"the run ended ERROR_ABORTED: {measurements.get('reason')}")
    fraction = bench.get("candidate_timeout_fraction")
    if fraction is not None and fraction >= rule.max_timeout_fraction:
        return verdict(
            "inconclusive", 1, f"{fraction:.0%} of the candidate's timed requests timed out", timeout_fraction=fraction
        )
    reached = (measurements.get("install_paths") or {}).get("selected")
    if not reached:
        statuses = {p["install_path"]: p["status"] for p in paths}
        if statuses and set(statuses.values()) <= UNSUPPORTED:
            return verdict(
                f"keep_{incumbent}_{candidate}_tts_unsupported_upstream",
                2,
                "every install path is unsupported upstream",
                paths=statuses,
            )
        return verdict("inconclusive", 3, "no install path reached BENCHING", paths=statuses)
    selected = next(p for p in paths if p["install_path"] == reached)
    if not selected.get("streaming_capable"):
        return verdict("aarch64_vllm_omni_unverified", 4, "only non-streaming install paths worked")
    if selected.get("cloning") == "preset_substitute":
        return verdict(f"keep_{incumbent}", 5, "cloning_unsupported")
    real = [s for s in scores or [] if not s.get("simulated") and s.get("condition") == rule.voice_condition]
    per_side = {side: [float(s["score"]) for s in real if s.get("side") == side] for side in ("candidate", "incumbent")}
    given = min(len(v) for v in per_side.values())
    if given < rule.min_scores:
        return verdict(
            "pending_listening",
            6,
            f"{given} of {rule.min_scores} listening scores per side given",
            scores={side: len(v) for side, v in per_side.items()},
        )
    # Exact arithmetic: scores are integers, so "difference exactly 0.5" must not fall to rounding.
    exact = {side: Fraction(sum(Fraction(x) for x in v), len(v)) for side, v in per_side.items()}
    means = {side: float(value) for side, value in exact.items()}
    summary = (bench.get("summary") or {}).get("candidate", {}).get(rule.voice_condition, {})
    ttfa_p50 = summary.get(rule.ttfa_metric, {}).get("p50")
    evidence = {"means": means, f"candidate_{rule.ttfa_metric}_p50": ttfa_p50}
    if (
        exact["candidate"] >= exact["incumbent"] + Fraction(str(rule.min_mean_margin))
        and ttfa_p50 is not None
        and ttfa_p50 <= rule.ttfa_p50_max_ms
    ):
        return verdict(
            "swap_candidate", 7, "the candidate clones better by the margin and starts audio fast enough", **evidence
        )
    return verdict(f"keep_{incumbent}", 8, "the candidate did not meet both conditions of the rule", **evidence)
