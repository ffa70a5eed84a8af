"""PREFLIGHT and BASELINE: what the run checks, and measures of the co-tenant, before it starts
anything on the GPU."""

from __future__ import annotations

import shutil
from typing import Any

from bench_py.clock import now_iso
from bench_py.measure import cotenant
from bench_py.run import preflight as checks
from bench_py.run import space
from bench_py.run.abort import Aborted
from bench_py.run.phases import closing
from bench_py.run.phases.context import PhaseFailed, RunContext
from bench_py.run.state import State

#: The verified reference clip's copy in the run directory.
REFERENCE_COPY = "reference.wav"


# -- PREFLIGHT --------------------------------------------------------------------------------
def preflight(run: RunContext) -> dict[str, Any]:
    run.store.expect(run.run_id, State.PREFLIGHT)
    try:
        run.check_abort()
    except Aborted as error:
        raise closing.aborted_by(run, error) from None
    result = checks.run_preflight(run.config, run.project_dir)
    run.write("preflight", result)
    if not result["ok"]:
        blocked = checks.blocked_paths(result)
        if blocked:  # every path's status and reason, as STARTING would have recorded them
            run.write(
                "candidate",
                {"paths": blocked, "selected": None, "order": list(run.config.candidate.install_paths)},
            )
        reason = " ".join(result["failures"])
        run.store.transition(run.run_id, State.ERROR_ABORTED, f"preflight failed: {reason}")
        closing.finish(run, aborted=True)
        raise PhaseFailed(reason)
    # Room for the closing documents, should the disk fill up mid-run (released at the end).
    space.make_reserve(run.dir, int(run.config.preflight.disk_reserve_mb * 2**20))
    # The verified clip travels with the run: the listening page plays it, the branch keeps it.
    shutil.copyfile(run.reference_wav(), run.dir / REFERENCE_COPY)
    run.store.transition(run.run_id, State.BASELINE, f"preflight passed; rule sealed {result['rule']['sha256']}")
    return result


# -- BASELINE ---------------------------------------------------------------------------------
def baseline(run: RunContext) -> dict[str, Any]:
    run.store.expect(run.run_id, State.BASELINE)
    try:
        cfg = cotenant.resolve_model(run.config.cotenant)
        result = cotenant.measure_latency(cfg, cfg.probes, cfg.warmup)
    except cotenant.CotenantUnreachable as error:
        run.write("baseline", {"ok": False, "error": str(error)})
        run.store.transition(run.run_id, State.ERROR_ABORTED, str(error))
        closing.finish(run, aborted=True)
        raise PhaseFailed(str(error)) from None
    result["ok"] = True
    run.write("baseline", result)
    p50 = result["latency_ms"]["p50"]
    try:
        run.check_abort()
    except Aborted as error:
        raise closing.aborted_by(run, error) from None
    note = ""
    if run.config.gemma_mode == "pause-gemma":
        _pause_cotenant(run)
        note = "; co-tenant paused (pause-gemma)"
    run.store.transition(run.run_id, State.STARTING, f"co-tenant baseline p50 {p50:.1f} ms{note}")
    return result


def _pause_cotenant(run: RunContext) -> None:
    control = run.config.cotenant.control
    # Recorded before it happens: recovery must be able to undo a pause even if we die mid-stop.
    pause = {"kind": control.kind, "name": control.name, "stopped_at": now_iso(), "restored": False}
    run.store.update(run.run_id, changes={"cotenant_paused": pause})
    try:
        cotenant.control_cotenant(control.kind, control.name, "stop", run.config.preflight.docker_url)
    except cotenant.ControlError as error:
        closing.abort(run, f"could not pause the co-tenant: {error}")
        raise PhaseFailed(f"could not pause the co-tenant: {error}") from None
