#!/usr/bin/env python3
"""Phase A0 measured. Not a test: it prints figures against the goals.

1. The measured set: ``--films`` seeded films in the short-lines style (the target's lines run
   1.5–4.5 s, other voices come close or over her, her own voice through another engine as a
   distractor, music, background voices), each with subtitles in every shape. Each film's
   properties are printed, then, per shape, over all films: references produced, top-5 precision
   and the time per film hour. A reference is right when at least 90% of its speech is the
   target's and other voices (other speakers' lines, background voices) fill at most 0.3 s of it;
   a joined reference is judged on its source spans. Goals: at least 5 references per film and a
   top-5 precision of at least 90% for every shape.
2. Film scale: a 2-hour film with ~1,500 cues (``--timing-lines``, scene breaks between), every
   stage timed, wall and CPU seconds and the machine's load printed. Goal: 60 s or less on 2 cores.

Generation is cached and never timed. ``<v>`` subtitles are searched by name, every other shape
with an example clip of the voice (what a user without names does).

Usage: python bench/extraction.py [--films 3] [--lines 100] [--timing-lines 1400] [--skip-timing]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_py.standins.film import FILES, generate, properties  # noqa: E402
from bench_py.voice import findings  # noqa: E402
from bench_py.voice.extract import extract  # noqa: E402

EXAMPLE_TEXT = (
    "The quiet morning came back to the station, and I kept thinking about the long walk home "
    "before the light returned."
)


def is_right(candidate: dict, truth: dict) -> bool:
    """At least 90% of the reference's speech is the target's; other voices fill at most 0.3 s."""
    spans = candidate.get("spans") or [[candidate["start"], candidate["end"]]]

    def overlap(a: float, b: float, x: float, y: float) -> float:
        return max(0.0, min(b, y) - max(a, x))

    target = sum(
        overlap(a, b, x["start"], x["end"]) for a, b in spans for x in truth["lines"] if x["speaker"] == truth["target"]
    )
    others = sum(
        overlap(a, b, x["start"], x["end"]) for a, b in spans for x in truth["lines"] if x["speaker"] != truth["target"]
    )
    others += sum(overlap(a, b, x, y) for a, b in spans for x, y in truth.get("background", []))
    return target > 0 and others <= 0.3 and target >= 0.9 * (target + others)


def film(folder: Path, seed: int, lines: int, style: str, minutes: float | None = None) -> dict:
    path = folder / "truth.json"
    if path.is_file():
        truth = json.loads(path.read_text())
        same = truth.get("seed") == seed and len(truth["lines"]) == lines and truth.get("style") == style
        if same and truth.get("minutes") == minutes:
            return truth
    started = time.perf_counter()
    truth = generate(folder, seed=seed, lines=lines, style=style, minutes=minutes)
    truth["minutes"] = minutes
    path.write_text(json.dumps(truth, indent=1))
    print(f"  generated {folder.name} in {time.perf_counter() - started:.0f} s (not timed)", flush=True)
    return truth


def cpu_seconds() -> float:
    """CPU time of this process and its children (ffmpeg), user and system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(folder: Path, truth: dict, shape: str, example: Path, out: Path) -> tuple[dict, float, float]:
    """candidates.json, wall seconds, CPU seconds."""
    kwargs = {"speaker": truth["target"]} if shape == "voice" else {"example": example}
    started, cpu = time.perf_counter(), cpu_seconds()
    result = extract(folder / truth["film"], folder / FILES[shape], out, **kwargs).to_json()
    return result, time.perf_counter() - started, cpu_seconds() - cpu


def measured_set(args: argparse.Namespace, example: Path) -> bool:
    films = []
    print(f"measured set: {args.films} films, {args.lines} lines each, short-lines style")
    for index in range(args.films):
        seed = args.seed + index
        folder = args.cache / f"short-{seed}"
        truth = film(folder, seed, args.lines, "short")
        print(f"  film {seed}: {json.dumps(properties(truth))}", flush=True)
        films.append((folder, truth))
    print("\nper shape (names for <v>, the example clip for the rest):")
    print(f"  {'shape':<11} {'format':<11} {'references per film':<22} {'top-5 precision':<17} {'s per film hour':<15}")
    all_met = True
    for shape in FILES:
        counts, right, judged, seconds, hours, formats, kinds = [], 0, 0, 0.0, 0.0, set(), {"single": 0, "joined": 0}
        for folder, truth in films:
            result, elapsed, _cpu = run(folder, truth, shape, example, args.cache / "out" / f"{shape}-{truth['seed']}")
            kept = [c for c in result["candidates"] if c.get("file")]
            counts.append(len(kept))
            top = kept[:5]
            right += sum(is_right(c, truth) for c in top)
            judged += len(top)
            seconds += elapsed
            hours += truth["duration_s"] / 3600
            formats.add(result["format"])
            for c in kept:
                kinds[c["kind"]] += 1
            if len(kept) < 5:
                print(f"    film {truth['seed']}: " + " / ".join(findings.lines(result["summary"])))
        precision = right / judged if judged else 0.0
        met = min(counts) >= 5 and precision >= 0.9
        all_met &= met
        print(
            f"  {shape:<11} {'/'.join(sorted(formats)):<11} {' '.join(map(str, counts)):<10} "
            f"({kinds['single']} single, {kinds['joined']} joined)  {right}/{judged} = {precision:.0%}"
            f"{'':<4} {seconds / hours:6.1f}     {'goal met' if met else 'GOAL MISSED'}",
            flush=True,
        )
    return all_met


def film_scale(args: argparse.Namespace, example: Path) -> bool:
    folder = args.cache / "film-scale"
    truth = film(folder, args.seed, args.timing_lines, "long", minutes=120)
    met = True
    for shape in args.timing_shapes:
        text = (folder / FILES[shape]).read_text(encoding="utf-8-sig")
        cues = sum(1 for line in text.splitlines() if "-->" in line)
        print(f"\nfilm scale: {truth['duration_s'] / 3600:.2f} h, {cues} cues ({shape}), target {truth['target']}")
        load = os.getloadavg()[0]
        result, elapsed, cpu = run(folder, truth, shape, example, args.cache / "out" / f"scale-{shape}")
        kept = [c for c in result["candidates"] if c.get("file")]
        print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in result["timings_s"].items()))
        ok = elapsed <= 60.0
        met &= ok
        print(
            f"  total {elapsed:.1f} s wall, {cpu:.1f} s CPU, load average {load:.2f} before it on "
            f"{os.cpu_count()} cores (goal: 60 s or less on 2 cores: {'met' if ok else 'MISSED'}); "
            f"{len(kept)} references, {sum(is_right(c, truth) for c in kept[:5])}/{len(kept[:5])} of the top 5 right"
        )
    return met


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--films", type=int, default=3, help="films in the measured set (each in every shape)")
    cli.add_argument("--lines", type=int, default=100, help="lines of dialogue per film of the measured set")
    cli.add_argument("--seed", type=int, default=21)
    cli.add_argument("--timing-lines", type=int, default=1400, help="lines of the 2-hour film (~1,500 cues)")
    cli.add_argument("--timing-shapes", nargs="+", default=["none", "youtube"], choices=list(FILES))
    cli.add_argument("--skip-timing", action="store_true")
    cli.add_argument("--skip-set", action="store_true")
    cli.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench-extraction")
    args = cli.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    example = args.cache / "example.wav"
    if not example.exists():
        subprocess.run(["flite", "-voice", "slt", "-t", EXAMPLE_TEXT, "-o", str(example)], check=True)
    goals = []
    if not args.skip_set:
        goals.append(measured_set(args, example))
    if not args.skip_timing:
        goals.append(film_scale(args, example))
    print("\nall goals met" if all(goals) else "\nsome goals missed (see above)")


if __name__ == "__main__":
    main()
