"""The orphan sweep and run recovery, for the daily timer, the boot unit and ``voxbench cleanup``.

Containers are selected by the labels voxbench sets (bench flag, run id, host, expiry), never
by their names: an unlabelled container is never touched. Every removal is logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from bench_py.engines.container import LABEL_BENCH, LABEL_EXPIRES, LABEL_HOST, LABEL_RUN, remove_run_containers
from bench_py.processes import stop_run_processes
from bench_py.run.space import release_reserve
from bench_py.run.state import TERMINAL, RunState, State, StateError, StateStore

log = logging.getLogger("voxbench.cleanup")


def _created(container: Any) -> dt.datetime:
    stamp = container.attrs["Created"]  # RFC 3339 with nanoseconds: 2026-11-26T06:12:33.123456789Z
    head, _, frac = stamp.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC) + dt.timedelta(
        microseconds=int((frac + "000000")[:6]) if frac else 0
    )


def sweep(
    client: docker.DockerClient,
    max_age_hours: float,
    host: str | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Remove bench containers older than ``max_age_hours`` or past their expiry label."""
    now = now or dt.datetime.now(dt.UTC)
    labels = [f"{LABEL_BENCH}=true"] + ([f"{LABEL_HOST}={host}"] if host else [])
    selected = []
    for container in client.containers.list(all=True, filters={"label": labels}):
        age_h = (now - _created(container)).total_seconds() / 3600
        expires = container.labels.get(LABEL_EXPIRES)
        past_expiry = bool(expires) and dt.datetime.fromisoformat(expires) < now
        if age_h <= max_age_hours and not past_expiry:
            continue
        reason = f"older than {max_age_hours:g} h" if age_h > max_age_hours else f"past its expiry {expires}"
        entry = {
            "name": container.name,
            "id": container.id[:12],
            "run_id": container.labels.get(LABEL_RUN),
            "age_hours": round(age_h, 2),
            "reason": reason,
            "removed": False,
        }
        if not dry_run:
            try:
                if container.status == "running":
                    container.stop(timeout=10)
                container.remove(force=True)
                entry["removed"] = True
            except docker.errors.NotFound:
                entry["removed"] = True
        log.info(
            "%s %s (%s, run %s): %s",
            "would remove" if dry_run else "removed",
            container.name,
            entry["id"],
            entry["run_id"],
            reason,
        )
        selected.append(entry)
    return selected


def sweep_packs(state_dir: Path, max_age_hours: float, dry_run: bool = False) -> list[Path]:
    """Packs the collector left on the host (``collect-<run id>.tar``: an interrupted collection
    never reached its removal) older than ``max_age_hours``; a collection under way is younger."""
    cutoff = time.time() - max_age_hours * 3600
    stale = [p for p in sorted(Path(state_dir).expanduser().glob("collect-*.tar")) if p.stat().st_mtime < cutoff]
    for pack in stale if not dry_run else []:
        pack.unlink(missing_ok=True)
        log.info("removed %s, a pack an interrupted collection left", pack)
    return stale


def recover(store: StateStore, client: docker.DockerClient | None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Close runs left in progress whose dispatcher is gone; remove what they started.

    ``host_restarted`` when the run began before the current boot, else ``dispatcher_lost``. The run
    is closed through its own abort path where it can be (its configuration is in its directory):
    engine logs kept, engines removed and verified, a paused co-tenant restarted and its recovery
    measured against the run's baseline, then ``measurements.json`` and the verdict, so the next
    ``bench.yml`` collects it like any aborted run. What that could not do is done here by labels,
    recorded pids and the state file.
    """
    runs_dir = store.root / "runs"
    recovered = []
    for state_file in sorted(runs_dir.glob("*/state.json")) if runs_dir.is_dir() else []:
        run_id = state_file.parent.name
        try:
            state = store.load(run_id)
        except StateError:
            continue
        if state.state in TERMINAL or (store.dispatcher_alive(state) is not False and store.same_boot(state)):
            continue
        reason = "dispatcher_lost" if store.same_boot(state) else "host_restarted"
        entry: dict[str, Any] = {"run_id": run_id, "was": str(state.state), "reason": reason}
        if not dry_run:
            closing = f"{reason}: recovered by voxbench cleanup"
            entry["reserve_released_bytes"] = release_reserve(store.run_dir(run_id))
            teardown = _close_through_teardown(store, state, closing)
            entry["teardown"] = _teardown_summary(run_id, teardown)
            if teardown is None:  # it started nothing yet, or its own teardown could not run
                if client is not None:
                    entry["removal"] = remove_run_containers(client, run_id, grace_s=10)
                entry["processes"] = _stop_run_processes(state.changes.get("processes"))
                entry["run_processes"] = stop_run_processes(run_id, grace_s=10)  # anything else carrying its id
            else:
                entry["removal"] = teardown["removal"]
                entry["processes"] = teardown["removal"].get("processes") or []
                entry["run_processes"] = teardown["removal"].get("run_processes")
            restore = (teardown or {}).get("cotenant_restore")
            restarted = _restore_paused_cotenant(store, run_id)  # whatever the teardown did not restore
            # The fallback's answer when it ran (the teardown had not restored it), else the teardown's.
            entry["cotenant_restarted"] = (
                restarted if restarted is not None or restore is None else bool(restore.get("ok"))
            )
            if not store.load(run_id).terminal:
                store.transition(run_id, State.ERROR_ABORTED, closing)
        log.info("%s run %s (%s): %s", "would close" if dry_run else "closed", run_id, state.state, reason)
        recovered.append(entry)
    return recovered


def _close_through_teardown(store: StateStore, state: RunState, reason: str) -> dict[str, Any] | None:
    """Abort the run as its own process would have (``voxbench run``'s abort path), and return
    the teardown it recorded; None where none ran (a run in PREFLIGHT or BASELINE started no
    engine) or the run could not be closed that way (no configuration in its directory)."""
    from bench_py.config.model import ConfigError
    from bench_py.run.phases import Run

    project_dir = Path((state.changes.get("dispatcher") or {}).get("project_dir") or ".")
    try:
        run = Run(store, state.run_id, project_dir)
    except (OSError, ValueError, ConfigError) as error:
        log.warning("run %s has no usable configuration (%s): closing it by its labels and pids", state.run_id, error)
        return None
    had_teardown = run.read("teardown")
    try:
        run.run_phase("abort", reason)
    except Exception:  # recovery goes on by labels and pids; the state file says the rest
        log.exception("the teardown of run %s failed: removing what it started by its labels and pids", state.run_id)
        return None
    teardown = run.read("teardown")
    if teardown is None or teardown == had_teardown:
        return None
    return teardown


_POSTFLIGHT_KEYS = ("ok", "p50_ms", "baseline_p50_ms", "ratio", "max_ratio", "counted_from", "reason")


def _teardown_summary(run_id: str, teardown: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the recovery's teardown found: removal verified, and the co-tenant's post-flight."""
    if teardown is None:
        return None
    post = teardown.get("postflight") or {}
    restore = teardown.get("cotenant_restore") or {}
    summary = {
        "removal_verified": bool(teardown["removal"].get("verified")),
        "cotenant_answered_after_s": restore.get("answered_after_s"),
        "postflight": {key: post.get(key) for key in _POSTFLIGHT_KEYS},
    }
    log.info(
        "run %s torn down: removal verified %s, co-tenant p50 %s ms against its baseline %s ms (ok: %s)",
        run_id,
        summary["removal_verified"],
        post.get("p50_ms"),
        post.get("baseline_p50_ms"),
        post.get("ok"),
    )
    return summary


def _stop_run_processes(recorded: Any) -> list[dict[str, Any]]:
    """The run's 2B engine sessions, by the names and pids its state file recorded."""
    from bench_py.engines.paths import stop_session

    recorded = [recorded] if isinstance(recorded, dict) else recorded or []
    return [stop_session(p["session"], p.get("pid"), 10, p.get("pid_start")) for p in recorded]


def _restore_paused_cotenant(store: StateStore, run_id: str) -> bool | None:
    """Restart a co-tenant this run paused and did not restore (never one voxbench did not stop)."""
    state = store.load(run_id)
    pause = state.changes.get("cotenant_paused")
    if not pause or pause.get("restored"):
        return None
    from bench_py.measure.cotenant import ControlError, control_cotenant

    docker_url = None
    with contextlib.suppress(OSError, KeyError, ValueError):
        docker_url = json.loads((store.run_dir(run_id) / "config.json").read_text())["preflight"]["docker_url"]
    try:
        control_cotenant(pause["kind"], pause["name"], "start", docker_url)
    except ControlError as error:
        log.error("could not restart the co-tenant %s paused by run %s: %s", pause["name"], run_id, error)
        return False
    store.update(run_id, changes={"cotenant_paused": {**pause, "restored": True, "restored_by": "recovery"}})
    log.info("restarted the co-tenant %s that run %s had paused", pause["name"], run_id)
    return True
