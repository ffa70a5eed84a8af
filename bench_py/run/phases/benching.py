"""BENCHING: the timed loops, candidate then incumbent, and the load sweep, with the memory
sampler and the co-tenant gate watching; an abort keeps every request already taken."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench_py.engines import paths
from bench_py.engines.docker_client import docker_client
from bench_py.engines.http import incumbent_target
from bench_py.measure import bench, memory
from bench_py.measure import deferred as deferred_baseline
from bench_py.measure.memory import MemorySampler
from bench_py.processes import pid_alive
from bench_py.run import space
from bench_py.run.abort import Aborted, request_abort
from bench_py.run.phases import closing
from bench_py.run.phases.context import RunContext
from bench_py.run.state import State


def _candidate_target(run: RunContext) -> Any:
    """What the timed loops call, for the install path that passed (the HTTP API for 2A/2B)."""
    selected = run.selected()
    path = run.ready_path
    if path is None or path.name != selected.get("install_path"):  # BENCHING called without STARTING here
        path = paths.make(selected.get("install_path", "2A"), run.path_context())
    return path.target(selected.get("substitute_voice"), (selected.get("preset_voice") or {}).get("name"))


def _memory_sources(run: RunContext) -> list[Any]:
    """Every memory view of the candidate: NVML per process and device, its cgroup, the host."""
    ready = run.selected()
    container_id = (ready.get("container") or {}).get("id")
    if container_id:
        client = docker_client(run.config.preflight.docker_url)

        def engine_pids() -> list[int]:
            top = client.containers.get(container_id).top(ps_args="-eo pid")
            return [int(row[0]) for row in top.get("Processes", [])]
    else:  # 2B: the engine's process; 2C: this process; 2D: each synthesis is a short-lived command
        # (2C: the model STARTING loaded lives in this process, the one that times it.)
        own = [os.getpid()] if ready.get("install_path") == "2C" else []
        fixed = [p for p in [(ready.get("process") or {}).get("pid")] if p] + own

        def engine_pids() -> list[int]:
            return fixed

    sources: list[Any] = [memory.NvmlProcessSource(engine_pids), memory.NvmlDeviceSource()]
    try:
        if not container_id:
            raise memory.SourceUnavailable(f"install path {ready.get('install_path')} runs no container")
        sources.append(memory.CgroupSource(memory.cgroup_memory_file(container_id)))
    except memory.SourceUnavailable as error:
        sources.append(memory.UnavailableSource("cgroup", str(error)))
    if not container_id and engine_pids():
        sources.append(memory.ProcessRssSource(engine_pids))
    sources.append(memory.MeminfoSource())
    return sources


def _targets(run: RunContext) -> dict[str, Any]:
    incumbent = incumbent_target(run.config.incumbent, run.reference_wav(), run.config.reference.name)
    return {"candidate": _candidate_target(run), "incumbent": incumbent}


def _incumbent_unreachable(run: RunContext, target: Any, timeouts: httpx.Timeout) -> str | None:
    """One short real request: None when the incumbent answers with audio, else why not."""

    async def probe() -> tuple[Any, Any]:
        async with httpx.AsyncClient(timeout=timeouts) as client:
            return await bench.one_request(client, target, "incumbent", "preset", 0, -1, "Hello.")

    record, _ = asyncio.run(probe())
    if record.ok and record.standin and not run.config.allow_standin_engines:
        return (
            f"the incumbent at {run.config.incumbent.url} is voxbench's stand-in ({record.standin}); "
            "set allow_standin_engines: true to measure it"
        )
    if record.ok:
        return None
    return f"the incumbent at {run.config.incumbent.url} did not answer: {record.error or record.status}"


def _benching_targets(
    run: RunContext, timeouts: httpx.Timeout, progress: Any
) -> tuple[dict[str, Any], list[str], str | None]:
    """Both sides, or the candidate alone when the incumbent is skipped or does not answer
    (its takes are then listed for `voxbench baseline resume`)."""
    cfg = run.config.bench
    deferred_reason = "skip_baseline is set" if cfg.skip_baseline else None
    targets = {"candidate": _candidate_target(run)}
    if deferred_reason is None:
        try:
            targets = _targets(run)
            deferred_reason = _incumbent_unreachable(run, targets["incumbent"], timeouts)
        except OSError as error:  # e.g. its token file cannot be read
            deferred_reason = f"the incumbent cannot be called: {error}"
    deferred: list[str] = []
    if deferred_reason:
        targets = {"candidate": targets["candidate"]}
        deferred = deferred_baseline.write_list(run.dir, cfg.utterances, list(cfg.conditions), deferred_reason)
        progress({"side": "incumbent", "deferred": deferred_reason})
    return targets, deferred, deferred_reason


class IncumbentLost(RuntimeError):
    """The incumbent stopped answering during its timed loop; the message says when and how."""


def _incumbent_check(
    run: RunContext, target: Any, timeouts: httpx.Timeout, kept: dict[str, Any], should_stop: Any
) -> Any:
    """Before every incumbent request: the run's own checks, then, after a request the incumbent
    failed, one short probe; a failed probe too means it is gone (production's incumbent is never
    ours to restart), and its loop stops rather than recording errors as its answers."""

    def check() -> None:
        should_stop()
        taken = kept.get("incumbent") or []
        if not taken or taken[-1].ok:
            return
        # The loop's own event loop runs this check: the probe gets a thread of its own.
        with ThreadPoolExecutor(1) as pool:
            why = pool.submit(_incumbent_unreachable, run, target, timeouts).result()
        if why:
            last = taken[-1]
            raise IncumbentLost(
                f"the incumbent stopped answering during BENCHING ({last.condition} u{last.utterance:02d}: "
                f"{last.error or last.status}); {why}"
            )

    return check


def _defer_the_rest(run: RunContext, kept: dict[str, Any], why: str, progress: Any) -> list[str]:
    """The takes an incumbent lost mid-loop still owes (no timed first repetition, so no WAV), listed
    for `voxbench baseline resume`; those it gave are kept as they are."""
    cfg = run.config.bench
    taken = kept.get("incumbent", [])
    given = {(r.utterance, r.condition) for r in taken if r.ok and not r.warmup and r.repetition == 0}
    owed: list[tuple[int, str]] = [
        (i, c) for c in cfg.conditions for i in range(len(cfg.utterances)) if (i, c) not in given
    ]
    progress({"side": "incumbent", "deferred": why})
    return deferred_baseline.write_list(run.dir, cfg.utterances, list(cfg.conditions), why, owed)


def benching(run: RunContext) -> dict[str, Any]:
    run.store.expect(run.run_id, State.BENCHING)
    cfg = run.config.bench
    timeouts = httpx.Timeout(
        connect=cfg.timeouts.connect, read=cfg.timeouts.read, write=cfg.timeouts.write, pool=cfg.timeouts.pool
    )

    def progress(update: dict[str, Any]) -> None:
        run.store.update(run.run_id, phase={"name": "BENCHING", **update})

    if cfg.client_cpus:
        os.sched_setaffinity(0, set(cfg.client_cpus))  # keep the client off the co-tenant's CPUs
    kept: dict[str, list[bench.RequestRecord]] = {}  # every request taken, as it is taken
    sampler: MemorySampler | None = None
    try:
        # The gate watches from the first moment of BENCHING, the incumbent's probe included.
        with run.disk_full_is_an_abort(), run.gate("BENCHING") as gate:
            try:
                targets, deferred, deferred_reason = _benching_targets(run, timeouts, progress)
                with MemorySampler(_memory_sources(run), cfg.memory_interval_s) as sampler:
                    records, load_result, lost = _timed_loops(run, targets, timeouts, progress, kept)
                if lost:
                    deferred_reason = lost
                    deferred = _defer_the_rest(run, records, lost, progress)
            finally:
                run.record_gate("BENCHING", gate)
    except Aborted as error:
        # Without its traceback (whose frames hold the targets), so that teardown can let 2C's model go.
        stopped: Aborted | None = error.with_traceback(None)
    else:
        stopped = None
    if stopped is not None:
        targets = {}
        _write_partial_bench(run, kept, sampler, str(stopped))
        raise closing.aborted_by(run, stopped) from None
    fraction = bench.timeout_fraction(records["candidate"])
    selected = run.selected()
    result = {
        # Every figure below came through this path; 2C/2D have no stream, so no TTFA.
        "install_path": selected.get("install_path"),
        "streaming_capable": selected.get("streaming_capable"),
        "memory": {
            "scope": "candidate during BENCHING (timed loops and load)",
            "sources": sampler.results() if sampler else {},
        },
        "load": load_result,
        "client_cpus": cfg.client_cpus,
        "utterances": cfg.utterances,
        "conditions": cfg.conditions,
        "repetitions": cfg.repetitions,
        "warmup": cfg.warmup,
        "concurrency": 1,
        "records": {side: bench.records_json(rs) for side, rs in records.items()},
        "summary": {side: bench.summarize_side(rs) for side, rs in records.items()},
        "candidate_timeout_fraction": fraction,
        "phase3_passed": fraction < cfg.max_timeout_fraction,
        "deferred_incumbent": deferred,
        "deferred_reason": deferred_reason,
        # 2C: how many times this run loaded the model (once: STARTING's load is the one timed).
        "engine_loads": getattr(run.ready_path, "loads", None),
    }
    run.write("bench", result)
    run.store.transition(run.run_id, State.TEARDOWN, f"timed loops finished; candidate timeouts {fraction:.0%}")
    return {"state": State.TEARDOWN, "phase3_passed": result["phase3_passed"], "summary": result["summary"]}


def _write_partial_bench(
    run: RunContext, kept: dict[str, list[bench.RequestRecord]], sampler: MemorySampler | None, why: str
) -> None:
    """An aborted BENCHING keeps what it had taken: every finished request and its WAV."""
    cfg = run.config.bench
    candidate = kept.get("candidate", [])
    partial = {
        "partial": True,
        "stopped_by": why,
        "install_path": run.selected().get("install_path"),
        "memory": {
            "scope": "candidate during BENCHING, until the abort",
            "sources": sampler.results() if sampler else {},
        },
        "utterances": cfg.utterances,
        "conditions": cfg.conditions,
        "repetitions": cfg.repetitions,
        "warmup": cfg.warmup,
        "records": {side: bench.records_json(rs) for side, rs in kept.items()},
        "summary": {side: bench.summarize_side(rs) for side, rs in kept.items()},
        "candidate_timeout_fraction": bench.timeout_fraction(candidate),
        "phase3_passed": False,  # an aborted run passes nothing
    }
    try:
        run.write("bench", partial)
    except OSError as error:
        if not space.is_disk_full(error):
            raise
        # Even the released reserve was not enough: the abort's own record still says why.


def _engine_gone(selected: dict[str, Any], client: Any) -> str | None:
    """Why the candidate's engine is no longer there (2A container, 2B process), or None."""
    if selected.get("container"):
        try:
            engine = client.containers.get(selected["container"]["id"])
        except Exception as error:  # removed behind our back counts as gone
            return f"the candidate container is gone ({type(error).__name__})"
        if engine.status != "running":
            code = engine.attrs["State"].get("ExitCode")
            return f"the candidate container {engine.status} (exit code {code}) during BENCHING"
    pid = (selected.get("process") or {}).get("pid")
    if pid and not pid_alive(int(pid)):
        return f"the candidate engine process {pid} exited during BENCHING"
    return None


def _stop_check(run: RunContext) -> Any:
    """Before every timed request: an abort flag, or a dead engine (fatal: row 9 of the
    state machine) — timing a dead engine would record errors as if they were its answers."""
    # Read once for the whole loop: the selected path and a Docker client do not change.
    selected = run.selected()
    client = docker_client(run.config.preflight.docker_url) if selected.get("container") else None

    def check() -> None:
        run.check_abort()
        gone = _engine_gone(selected, client)
        if gone:
            tail = [line for line in _engine_log_tail(run) if line.strip()][-5:]
            request_abort(run.dir, "engine_failure", gone, {"log_tail": tail})
            run.check_abort()

    return check


def _engine_log_tail(run: RunContext) -> list[str]:
    selected = run.selected()
    try:
        return paths.make(selected["install_path"], run.path_context()).log_lines(20)
    except Exception:  # the evidence is a courtesy; the abort must happen regardless
        return []


def _timed_loops(
    run: RunContext, targets: dict[str, Any], timeouts: httpx.Timeout, progress: Any, kept: dict[str, Any]
) -> tuple[Any, Any, str | None]:
    """The candidate's loop, the incumbent's (when it is measured), then the load sweep; with why the
    incumbent's loop stopped short, if it did (the candidate's figures are whole either way)."""
    cfg = run.config.bench
    should_stop = _stop_check(run)
    lost = None
    for side, target in targets.items():
        check = _incumbent_check(run, target, timeouts, kept, should_stop) if side == "incumbent" else should_stop
        try:
            bench.run(
                {side: target},
                cfg.utterances,
                cfg.conditions,
                cfg.repetitions,
                cfg.warmup,
                timeouts,
                run.dir / "wavs" if cfg.save_wavs else None,
                progress,
                cfg.audible_threshold_dbfs,
                check,
                kept,
            )
        except IncumbentLost as error:
            lost = str(error)
    records = kept
    load_result = None
    if cfg.load.enabled and getattr(targets["candidate"], "streaming", True) is False:
        load_result = {"skipped": "the install path does not stream; a load sweep measures streams"}
    elif cfg.load.enabled:
        progress({"side": "candidate", "load": "concurrency sweep"})
        load = cfg.load
        load_result = asyncio.run(
            bench.run_load(
                targets["candidate"],
                cfg.utterances[min(2, len(cfg.utterances) - 1)],
                timeouts,
                load.concurrency_limit,
                load.requests_per_level,
                load.max_error_rate,
                load.poisson_rate_per_s,
                load.poisson_requests,
                load.seed,
                should_stop,
            )
        )
    return records, load_result, lost
