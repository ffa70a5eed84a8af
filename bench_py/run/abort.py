"""The abort flag: one file in the run directory that any party may write to stop a run.

The co-tenant gate writes it when production degrades; the controller writes it (through
``abort.yml``) on Ctrl-C or an API cancel. The phases check it between requests and go to
ERROR_ABORTED through teardown at once. A lost controller (SIGKILL, SSH drop) writes nothing,
so the run goes on.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, cast

from bench_py.files import atomic_write_json
from bench_py.run.space import is_disk_full, release_reserve

FLAG = "abort.json"


class Aborted(RuntimeError):
    """The run was asked to stop; the message says by whom and why."""

    def __init__(self, flag: dict[str, Any]) -> None:
        super().__init__(f"{flag.get('by', 'someone')}: {flag.get('reason', 'abort requested')}")
        self.flag = flag


def request_abort(run_dir: Path, by: str, reason: str, evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the flag unless one is there already (the first reason is the one that counts)."""
    existing = read_abort(run_dir)
    if existing:
        return existing
    flag = {
        "by": by,
        "reason": reason,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "evidence": evidence or {},
    }
    try:
        atomic_write_json(run_dir / FLAG, flag)
    except OSError as error:
        if not is_disk_full(error):
            raise
        # The flag is what stops the run: it is worth the run's reserve (a gate thread, a signal
        # handler and the phases may all meet the full disk here first).
        release_reserve(run_dir)
        atomic_write_json(run_dir / FLAG, flag)
    return flag


def read_abort(run_dir: Path) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], json.loads((run_dir / FLAG).read_text()))
    except FileNotFoundError:
        return None


def check_abort(run_dir: Path) -> None:
    """Raise :class:`Aborted` when the flag is set."""
    flag = read_abort(run_dir)
    if flag:
        raise Aborted(flag)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench_py.run.abort RUN_DIR --by signal --reason ...``: what the host-side
    run's shell calls when it is sent SIGTERM, SIGINT or SIGHUP."""
    import argparse

    cli = argparse.ArgumentParser(prog="python -m bench_py.run.abort", description=main.__doc__)
    cli.add_argument("run_dir", type=Path)
    cli.add_argument("--by", default="signal")
    cli.add_argument("--reason", required=True)
    args = cli.parse_args(argv)
    from bench_py.processes import session_ending

    if session_ending():  # a reboot's (or a killed tmux's) signals are no operator's: recovery closes the run
        return
    request_abort(args.run_dir, args.by, args.reason)


if __name__ == "__main__":
    main()
