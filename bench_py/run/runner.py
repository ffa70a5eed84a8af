"""``voxbench run RUN_ID``: one run's phases, in one process on the GPU host.

The launcher starts this in the host's tmux session (``voxbench``) so that the run outlives the
controller's SSH connection and finishes, and tears down, without it. The phases pass what they
learn in memory (the in-process engine 2C loaded in STARTING is the one BENCHING times); each
still writes its document the moment it has something to say, so a crash loses nothing measured.

There is one abort path: a phase that fails (a signal's abort flag, the co-tenant gate, a full
disk, a dead engine, or an error nobody foresaw) ends in :func:`bench_py.run.phases.closing.abort`,
which tears down and checks the co-tenant before it records ``ERROR_ABORTED``.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench_py.processes import host_shutting_down, session_ending
from bench_py.run.abort import request_abort
from bench_py.run.phases import PHASES, Run
from bench_py.run.phases.context import PhaseFailed
from bench_py.run.state import State, StateError, StateStore

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def _abort_on_signals(run_dir: Path) -> None:
    """SIGTERM or SIGHUP sent to this process itself (a ``kill`` of its pid) is an operator abort,
    as it is when sent to the tmux shell: the flag, and the phases tear down at their next check.
    The same signals from the whole session ending (the host shutting down, tmux itself killed: the
    tmux server goes too) are no operator's: the process ends at once, leaving the run open for the
    recovery to close (``host_restarted`` at the next boot), rather than starting a teardown the
    shutdown would cut off half-way."""

    def raise_flag(signum: int, _frame: object) -> None:
        if session_ending():
            os._exit(128 + signum)  # no teardown, no abort path: the boot's recovery closes the run
        request_abort(run_dir, "operator", f"operator abort: the run's process was sent {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_flag)


def run(state_dir: Path, run_id: str, project_dir: Path, say: Say = _say) -> int:
    """Walk the run from PREFLIGHT to DONE or ERROR_ABORTED; 0 when it ended DONE, else 1."""
    store = StateStore(state_dir)
    the_run = Run(store, run_id, project_dir)
    _abort_on_signals(the_run.dir)
    try:
        for phase in PHASES:
            if phase == "benching" and store.load(run_id).state != State.BENCHING:
                continue
            say(f"{phase.upper()}: starting")
            result = the_run.run_phase(phase)
            say(f"{phase.upper()}: done, the run is {store.load(run_id).state}")
        say(f"run {run_id} done: verdict {result.get('verdict')}")
        return 0
    except (PhaseFailed, StateError) as error:
        reason = str(error)
    except BaseException as error:  # a fault nobody foresaw (or Ctrl-C by hand) still tears down
        traceback.print_exc()
        reason = f"{type(error).__name__}: {error}"
    say(f"aborting: {reason}")
    try:
        the_run.run_phase("abort", reason)
    except Exception:  # the abort's own failure is in the log; the run's state says the rest
        traceback.print_exc()
    say(f"run {run_id} aborted: {reason}")
    return 1


def close_unfinished(
    state_dir: Path, run_id: str, project_dir: Path, say: Say = _say, reason: str | None = None
) -> int:
    """After the run's process is gone: a run it left open (the process was killed, ran out of
    memory or crashed before its abort could run) is aborted here, tearing down as any abort does.
    A run that closed itself is left as it is; so is one on a host that is shutting down (its next
    boot closes it, as ``host_restarted``). 0 when nothing was left to close."""
    store = StateStore(state_dir)
    state = store.load(run_id)
    if state.terminal and state.changes.get("files_written"):
        return 0
    if host_shutting_down():
        say(f"the host is shutting down: run {run_id} ({state.state}) is closed at its next boot (voxbench-recover)")
        return 1
    reason = reason or (
        f"the run's process ended in {state.state} without closing the run (killed, out of memory or crashed)"
    )
    say(f"closing: {reason}")
    # The abort record says who ended the run, as for every abort: an operator's flag raised before
    # the process went is kept (the first reason counts); otherwise the process was lost.
    request_abort(store.run_dir(run_id), "process_lost", reason)
    Run(store, run_id, project_dir).run_phase("abort", reason)
    say(f"run {run_id} closed: {store.load(run_id).state}")
    return 1
