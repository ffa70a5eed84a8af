#!/usr/bin/env python3
"""Coverage-guided fuzzing of voxbench's parsers with atheris (libFuzzer), outside CI.

The targets are the hostile-input tests themselves (tests/unit/test_hostile_input.py): each is
a hypothesis test, and hypothesis turns libFuzzer's bytes into its examples through
``fuzz_one_input``. CI runs them bounded (200 examples each); here they run as long as you let
them, guided by coverage of bench_py. A finding is an input whose test fails (another exception
than the parser's own clear error, a hang past the deadline, a write outside its directory);
libFuzzer saves it as ``crash-<sha1>`` and ``--replay FILE`` runs it again.

Usage:
    pip install -e '.[fuzz]'
    python bench/fuzz.py --list
    python bench/fuzz.py TARGET [libFuzzer flags, e.g. -max_total_time=600 -jobs=2]
    python bench/fuzz.py TARGET --replay crash-<sha1>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]' (Linux or macOS, Python 3.11+)")
    with atheris.instrument_imports(include=["bench_py"]):
        from tests.unit import test_hostile_input as hostile
    targets = {
        name: fn
        for name, fn in vars(hostile).items()
        if name.startswith("test_") and hasattr(getattr(fn, "hypothesis", None), "fuzz_one_input")
    }
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("target", nargs="?", help="a hostile-input test (see --list)")
    cli.add_argument("--list", action="store_true", help="print the targets and exit")
    cli.add_argument("--replay", type=Path, help="run one saved input through the target and exit")
    args, libfuzzer_flags = cli.parse_known_args()
    if args.list or not args.target:
        print("\n".join(sorted(targets)))
        return
    if args.target not in targets:
        sys.exit(f"no target {args.target!r}; the targets are: {', '.join(sorted(targets))}")
    fuzz_one_input = targets[args.target].hypothesis.fuzz_one_input
    if args.replay:
        fuzz_one_input(args.replay.read_bytes())  # raises the test's failure, if it still fails
        print(f"{args.replay}: {args.target} passes")
        return
    atheris.Setup([sys.argv[0], *libfuzzer_flags], fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
