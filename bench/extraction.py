#!/usr/bin/env python3
"""Phase A0 at film scale: a generated ~2-hour film, ~1500 cues, no speaker markers. Prints the
time of each stage (parse, decode, segment, embed, rank, extract of the top 20) and the share of
the top 20 that is the target speaker by the ground truth. Generation is not timed. Not a test.

Usage: python bench/extraction.py [--lines 1700] [--seed 7] [--film-dir .cache/bench-film]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_py.standins.film import generate  # noqa: E402
from bench_py.voice.extract import extract  # noqa: E402


def is_target(candidate: dict, truth: dict) -> bool:
    """Over 60% of the clip is the target's lines and under 0.3 s anyone else's."""
    a, b = candidate["start"], candidate["end"]

    def spoken(keep) -> float:
        return sum(max(0.0, min(b, x["end"]) - max(a, x["start"])) for x in truth["lines"] if keep(x["speaker"]))

    return spoken(lambda s: s != truth["target"]) < 0.3 and spoken(lambda s: s == truth["target"]) / (b - a) > 0.6


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--lines", type=int, default=1700)
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument("--film-dir", type=Path, default=ROOT / ".cache" / "bench-film")
    cli.add_argument("--top", type=int, default=20)
    args = cli.parse_args()
    truth_path = args.film_dir / "truth.json"
    if truth_path.is_file() and json.loads(truth_path.read_text()).get("seed") == args.seed:
        truth = json.loads(truth_path.read_text())
        print(f"film: cached {args.film_dir}")
    else:
        started = time.perf_counter()
        truth = generate(args.film_dir, seed=args.seed, lines=args.lines)
        print(f"film: generated in {time.perf_counter() - started:.0f} s (not timed below)")
    cues = sum(1 for line in (args.film_dir / "film.none.vtt").read_text().splitlines() if "-->" in line)
    print(f"film: {truth['duration_s'] / 3600:.2f} h, {cues} cues, no speaker markers, target {truth['target']}")
    example = args.film_dir / "example.wav"
    if not example.exists():
        import subprocess

        subprocess.run(
            [
                "flite",
                "-voice",
                "slt",
                "-t",
                "The quiet morning came back to the station, and I kept "
                "thinking about the long walk home before the light returned.",
                "-o",
                str(example),
            ],
            check=True,
        )
    out = args.film_dir / "clips"
    started = time.perf_counter()
    result = extract(args.film_dir / truth["film"], args.film_dir / "film.none.vtt", out, example=example, top=args.top,
                     progress=lambda line: print(f"  {line}", flush=True))  # fmt: skip
    total = time.perf_counter() - started
    kept = [c for c in result.to_json()["candidates"] if c.get("file")]
    hits = sum(is_target(c, truth) for c in kept)
    print(f"total {total:.1f} s (goal: under 60 s) for {len(kept)} clips; target speaker in {hits}/{len(kept)}")
    print("stages:", ", ".join(f"{k} {v:.2f} s" for k, v in result.timings_s.items()))


if __name__ == "__main__":
    main()
