"""TEARDOWN and the abort: the run's engines removed, a paused co-tenant restored and its
recovery measured; then ``measurements.json``, assembled from the phase files, and the verdict."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from bench_py import __version__
from bench_py.clock import now_iso
from bench_py.engines import container, diagnostics, paths
from bench_py.engines.docker_client import docker_client
from bench_py.measure import cotenant, memory
from bench_py.processes import stop_run_processes
from bench_py.run import space
from bench_py.run.abort import Aborted, read_abort
from bench_py.run.measurements import write_measurements
from bench_py.run.phases.context import PhaseFailed, RunContext
from bench_py.run.state import State


def aborted_by(run: RunContext, error: Aborted) -> PhaseFailed:
    """Tear down (from STARTING or BENCHING), record ERROR_ABORTED, and say so."""
    abort(run, str(error))
    return PhaseFailed(f"run aborted by {error}")


def _teardown_actions(run: RunContext) -> dict[str, Any]:
    """Remove the run's engines, restore a paused co-tenant, then measure its recovery."""
    client = docker_client(run.config.preflight.docker_url)
    lost: list[str] = []  # evidence a full disk would not take: teardown goes on without it

    def evidence(what: str, write: Any, default: Any) -> Any:
        try:
            return write()
        except OSError as error:
            if not space.is_disk_full(error):
                raise
            lost.append(f"{what}: {error.strerror}")
            return default

    logs = evidence("engine logs", lambda: container.save_logs(client, run.run_id, run.dir / "logs"), {})
    processes = _stop_processes(run)
    for session in processes:  # 2B engines wrote their logs into the run directory
        log_file = run.dir / "logs" / f"{session['session']}.log"
        if log_file.is_file():
            logs[session["session"]] = log_file.read_text(errors="replace")
    context = {
        "image": run.config.candidate.image,
        "host_arch": platform.machine(),
        "model": run.config.candidate.model,
    }
    kernel_errors = evidence("kernel-error diagnostic", lambda: diagnostics.write_report(run.dir, logs, context), None)
    removal = container.remove_run_containers(client, run.run_id, run.config.teardown.grace_s)
    removal["processes"] = processes
    # Anything else still carrying the run's id (a 2D command's child, an engine's helper that left
    # its group): found, stopped and counted; removal is verified only when none remains.
    removal["run_processes"] = stop_run_processes(run.run_id, run.config.candidate.process.stop_grace_s)
    removal["verified"] = (
        removal["verified"] and all(p["verified"] for p in processes) and removal["run_processes"]["verified"]
    )
    removal["in_process"] = _release_in_process_engine(run)
    restore = _restore_cotenant(run)
    post = _postflight(run, answered_after_restart=restore is not None)
    result = {
        "at": now_iso(),
        "removal": removal,
        "cotenant_restore": restore,
        "postflight": post,
        "engine_logs": sorted(f"logs/{name}.log" for name in logs),
        "kernel_errors": kernel_errors,
        "evidence_lost": lost,
    }
    run.write("teardown", result)
    return result


def _release_in_process_engine(run: RunContext) -> dict[str, Any] | None:
    """2C's model lives in this process: let it go before the co-tenant comes back and is
    measured (on unified memory it is the co-tenant's memory), and say what that gave back."""
    if run.ready_path is None or run.ready_path.kind != "in_process":
        return None
    import gc

    rss = memory.ProcessRssSource(lambda: [os.getpid()])
    before = rss.read()
    stopped = run.ready_path.stop()
    run.ready_path = None
    gc.collect()
    after = rss.read()
    return {**stopped, "rss_before_bytes": before, "rss_after_bytes": after}


def _stop_processes(run: RunContext) -> list[dict[str, Any]]:
    """Every engine process this run started (2B), from the state file: TERM → KILL → verify."""
    recorded = run.store.load(run.run_id).changes.get("processes") or []
    recorded = [recorded] if isinstance(recorded, dict) else recorded
    grace = run.config.candidate.process.stop_grace_s
    return [paths.stop_session(p["session"], p.get("pid"), grace, p.get("pid_start")) for p in recorded]


def _restore_cotenant(run: RunContext) -> dict[str, Any] | None:
    """pause-gemma: start the co-tenant again (always, even when the run failed) and time the outage."""
    pause = run.store.load(run.run_id).changes.get("cotenant_paused")
    if not pause or pause.get("restored"):
        return None
    cfg = run.cotenant
    started_at = now_iso()
    try:
        cotenant.control_cotenant(pause["kind"], pause["name"], "start", run.config.preflight.docker_url)
    except cotenant.ControlError as error:
        return {"ok": False, "reason": str(error), "stopped_at": pause["stopped_at"], "start_at": started_at}
    run.store.update(run.run_id, changes={"cotenant_paused": {**pause, "restored": True}})
    answered_s = cotenant.wait_answering(cfg, cfg.resume_timeout_s)
    return {
        "ok": answered_s is not None,
        "stopped_at": pause["stopped_at"],
        "start_at": started_at,
        "answered_after_s": None if answered_s is None else round(answered_s, 3),
        "reason": None
        if answered_s is not None
        else f"the co-tenant did not answer within {cfg.resume_timeout_s:g} s of its restart",
    }


def _postflight(run: RunContext, answered_after_restart: bool = False) -> dict[str, Any]:
    """The co-tenant must be back within ``postflight_max_ratio`` × baseline within the window."""
    cfg = run.cotenant
    baseline = (run.read("baseline") or {}).get("latency_ms", {}).get("p50")
    if not baseline:
        return {"ok": True, "reason": None, "baseline_p50_ms": None, "note": "no baseline was taken"}
    result = cotenant.recover_latency(cfg, baseline, cfg.postflight_max_ratio, cfg.postflight_window_s)
    result.update(
        baseline_p50_ms=baseline,
        max_ratio=cfg.postflight_max_ratio,
        window_s=cfg.postflight_window_s,
        counted_from="answering again after the restart" if answered_after_restart else "teardown",
    )
    result.setdefault("reason", None)
    return result


def teardown(run: RunContext) -> dict[str, Any]:
    run.store.expect(run.run_id, State.TEARDOWN)
    result = _teardown_actions(run)
    problems = []
    if not result["removal"]["verified"]:
        problems.append(f"removal not verified: {result['removal']}")
    if result["cotenant_restore"] and not result["cotenant_restore"]["ok"]:
        problems.append(f"co-tenant not restored: {result['cotenant_restore']['reason']}")
    if not result["postflight"]["ok"]:
        problems.append(f"co-tenant did not recover: {result['postflight']['reason']}")
    if problems:
        run.store.transition(run.run_id, State.ERROR_ABORTED, "; ".join(problems))
        finish(run, aborted=True)
        raise PhaseFailed("; ".join(problems))
    run.store.transition(run.run_id, State.DONE, "engines verified gone, co-tenant within bounds")
    return finish(run, aborted=False)


def abort(run: RunContext, reason: str) -> dict[str, Any]:
    """Operator abort or fatal failure: teardown and post-flight first, then ERROR_ABORTED."""
    current = run.store.load(run.run_id)
    if current.terminal and not current.changes.get("files_written"):
        return finish(run, aborted=current.state == State.ERROR_ABORTED)  # the disk filled mid-finish
    if current.terminal:
        return {"state": current.state, "already": True}
    if current.state in (State.STARTING, State.BENCHING, State.TEARDOWN):
        _teardown_actions(run)
    run.store.transition(run.run_id, State.ERROR_ABORTED, reason)
    return finish(run, aborted=True)


def _incumbent_standin(run: RunContext) -> str | None:
    """The stand-in the incumbent said it was in any answer it gave, or None."""
    records = ((run.read("bench") or {}).get("records") or {}).get("incumbent") or []
    return next((r["standin"] for r in records if r.get("standin")), None)


def _cpu_layout(run: RunContext) -> dict[str, Any]:
    """Which CPUs each party ran on: separate CPUs keep honest contention from tripping the gate."""
    layout: dict[str, Any] = {
        "candidate": run.config.candidate.cpuset_cpus,
        "client": run.config.bench.client_cpus,
        "cotenant": None,
    }
    control = run.config.cotenant.control
    if control.kind == "container" and control.name:
        try:
            client = docker_client(run.config.preflight.docker_url)
            layout["cotenant"] = client.containers.get(control.name).attrs["HostConfig"].get("CpusetCpus") or None
        except Exception as error:
            layout["cotenant"] = f"unknown ({type(error).__name__})"
    return layout


def finish(run: RunContext, aborted: bool) -> dict[str, Any]:
    """Assemble measurements.json from the phase files (validated against its schema)."""
    space.release_reserve(run.dir)  # the run is over: its reserve's space is the documents' now
    state = run.store.load(run.run_id)
    measurements = {
        "schema": "voxbench/measurements/v0",
        "run_id": run.run_id,
        "voxbench_version": __version__,
        "host": {"name": socket.gethostname(), "arch": platform.machine(), "python": platform.python_version()},
        "created_at": state.created_at,
        "final_state": str(state.state),
        "reason": state.reason,
        "aborted": aborted,
        "history": state.history,
        "gemma_mode": run.config.gemma_mode,
        "profile": run.config.profile,
        "candidate": {
            "name": run.config.candidate.name,
            "model": run.config.candidate.model,
            # What answered, not what was configured: a stand-in is named whatever the config says.
            "standin": bool(run.selected().get("standin")),
            "standin_evidence": run.selected().get("standin"),
            "where": socket.gethostname(),
        },
        "incumbent": {
            "name": run.config.incumbent.name,
            "api": run.config.incumbent.api,
            "url": run.config.incumbent.url,
            "standin": _incumbent_standin(run) is not None,
            "standin_evidence": _incumbent_standin(run),
            "where": run.config.incumbent.host,
        },
        "preflight": run.read("preflight"),
        "baseline": run.read("baseline"),
        "install_paths": run.read("candidate"),
        "bench": run.read("bench"),
        "teardown": run.read("teardown"),
        "cotenant": {
            "gate": (run.read("gate") or {}).get("phases", []),
            "paused": state.changes.get("cotenant_paused"),
        },
        "cpu_layout": _cpu_layout(run),
        "abort": read_abort(run.dir),
    }
    write_measurements(run.dir / "measurements.json", measurements)
    from bench_py.results.report import write_verdict

    verdict = write_verdict(run.dir)
    # The watcher collects once this is set: the files above are complete.
    run.store.update(run.run_id, changes={"files_written": now_iso()})
    return {"state": str(state.state), "verdict": verdict["verdict"], "measurements": str(run.dir)}
