"""Say what was found: how many references came out of how many asked, and when fewer, why (the
rejections counted by reason) and what the user can do about it."""

from __future__ import annotations

from collections import Counter
from typing import Any

#: What each rejection code means, for people (one stretch, several).
REASONS = {
    "overlap": ("overlaps another speaker or music", "overlap another speaker or music"),
    "mixed": ("holds another voice (its likeness to the target drops along it)",
              "hold another voice (their likeness to the target drops along them)"),
    "background": ("has voices or noise murmuring under it", "have voices or noise murmuring under them"),
    "short": ("is shorter than the minimum", "are shorter than the minimum"),
    "little_speech": ("holds under 0.5 s of speech once silence is trimmed",
                      "hold under 0.5 s of speech once silence is trimmed"),
    "cut_failed": ("could not be cut by ffmpeg", "could not be cut by ffmpeg"),
}  # fmt: skip


def _field(candidate: Any, name: str) -> Any:
    return candidate[name] if isinstance(candidate, dict) else getattr(candidate, name)


def summarize(
    *, asked: int, candidates: list[Any], rejected: list[dict[str, Any]], mode: str, min_seconds: float,
    clusters: list[dict[str, Any]], pool: dict[str, Any], skipped: list[tuple[int, str]],
) -> dict[str, Any]:  # fmt: skip
    """The summary candidates.json, the CLI and the Ansible role all show."""
    kept = [c for c in candidates if _field(c, "file")]
    kinds = Counter(_field(c, "kind") for c in kept)
    counts = Counter(r.get("why", "other") for r in rejected)
    summary: dict[str, Any] = {
        "asked": asked,
        "produced": len(kept),
        "single": kinds.get("single", 0),
        "joined": kinds.get("joined", 0),
        "ranked": len(candidates),
        "rejected": dict(sorted(counts.items())),
        "skipped_cues": dict(Counter(why for _, why in skipped)),
        **pool,
    }
    if len(kept) >= asked:
        summary["why"] = None
        summary["advice"] = []
        return summary
    parts = [f"{n} stretch{'es' * (n != 1)} {REASONS.get(why, (why, why))[n != 1]}" for why, n in counts.most_common()]
    why = f"{len(kept)} of {asked} references: " + ("; ".join(parts) if parts else "the target has no usable speech")
    if pool:
        why += (
            f"; {pool['clean_regions']} clean short regions of the target ({pool['clean_speech_s']:g} s of speech) "
            f"gave {summary['joined']} joined reference{'s' * (summary['joined'] != 1)}"
        )
    advice = []
    shorter = sum(1 for r in rejected if r.get("why") == "short" and r["end"] - r["start"] >= 3.0)
    if shorter and min_seconds > 3.0:
        advice.append(
            f"a lower minimum: --min-seconds 3 (now {min_seconds:g}) admits {shorter} more single "
            f"stretch{'es' * (shorter != 1)}"
        )
    if mode != "example":
        advice.append("--example CLIP: a few seconds of the voice, cut by hand, ranks every region by likeness to it")
    else:
        advice.append("another --example: a longer, cleaner clip of the voice finds its speaker cluster more surely")
    if mode in ("cluster", "example") and len(clusters) > 1:
        advice.append(
            f"another cluster: --cluster N picks one of the {len(clusters)} speaker clusters by ear (without "
            "--example and --cluster, one clip of each is written to OUT/clusters/); a voice can be split in two"
        )
    summary["why"] = why
    summary["advice"] = advice
    return summary


def clusters_summary(clusters: list[dict[str, Any]], skipped: list[tuple[int, str]]) -> dict[str, Any]:
    """Before a cluster is picked: what there is to listen to."""
    return {
        "asked": 0,
        "produced": 0,
        "clusters": len(clusters),
        "skipped_cues": dict(Counter(why for _, why in skipped)),
        "why": None,
        "advice": [f"listen to the {len(clusters)} clusters' clips, then run again with --cluster N"],
    }


def lines(summary: dict[str, Any]) -> list[str]:
    """The summary as lines for a terminal or Ansible's output."""
    if not summary or not summary.get("asked"):
        return list(summary.get("advice", [])) if summary else []
    out = [
        f"{summary['produced']} of {summary['asked']} references ({summary['single']} single, "
        f"{summary['joined']} joined)"
    ]
    if summary.get("why"):
        out.append(f"why fewer: {summary['why']}")
        out.extend(f"you can try: {tip}" for tip in summary["advice"])
    return out
