#!/usr/bin/env python3
"""setup.yml over real SSH on test hosts: first converge, then a second run. Prints figures; not a test.

Starts N systemd + sshd test hosts (containers on this machine's Docker daemon), runs
setup.yml twice with pipelining and reports the wall time of each run and the changed count
per host of the second (goal: 0 everywhere, under 10 s per host).

Usage: python bench/setup_idempotence.py [--hosts 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from bench_py.standins.testhost import TestHostFleet  # noqa: E402


def run(inventory: Path, token: Path, cache: Path) -> tuple[float, dict[str, int], int]:
    bin_dir = Path(sys.executable).parent
    started = time.monotonic()
    result = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            str(inventory),
            "setup.yml",
            "-e",
            f"voxbench_token_source_file={token}",
            "-e",
            f"voxbench_runtime_bundle_cache={cache}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    elapsed = time.monotonic() - started
    changed = {h: int(c) for h, c in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", result.stdout, re.M)}
    return elapsed, changed, result.returncode


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--hosts", type=int, default=2)
    args = cli.parse_args()
    with tempfile.TemporaryDirectory(prefix="voxbench-setup-bench-") as workdir:
        work = Path(workdir)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key")], check=True)
        (work / "authorized_keys").write_text((work / "key.pub").read_text())
        token = work / "token"
        token.write_text("hf_bench_token\n")
        token.chmod(0o600)
        fleet = TestHostFleet(
            docker.from_env(),
            work / "key",
            work / "authorized_keys",
            work / "inventory",
            labels={"io.voxbench.bench-script": "setup"},
            progress=lambda _line: None,
        )
        try:
            fleet.start({f"benchhost{i}": True for i in range(1, args.hosts + 1)})
            for label in ("first converge", "second run"):
                elapsed, changed, rc = run(fleet.inventory, token, work / "bundles")
                print(f"{label:<15} {elapsed:6.1f} s  rc={rc}  changed per host: {changed}")
        finally:
            fleet.remove()


if __name__ == "__main__":
    main()
