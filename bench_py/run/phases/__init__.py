"""The phases of a run on the host, each asserting the state it expects.

Every phase writes its own file into the run directory the moment it has something to say,
so a failure later never loses what an earlier phase measured. TEARDOWN (and an abort from
STARTING or BENCHING) removes the run's containers, checks the co-tenant, and assembles
``measurements.json`` from those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx

from bench_py import __version__
from bench_py.audio import Pcm, read_wav_file, write_wav_file
from bench_py.clock import now_iso
from bench_py.config.model import Config
from bench_py.engines import container, diagnostics, paths, sanity
from bench_py.engines.docker_client import docker_client
from bench_py.engines.http import SpeechRequest, incumbent_target
from bench_py.files import atomic_write_json
from bench_py.measure import bench, cotenant, memory
from bench_py.measure import client as speech_client
from bench_py.measure import deferred as deferred_baseline
from bench_py.measure.gate import CotenantGate
from bench_py.measure.memory import MemorySampler
from bench_py.processes import pid_alive
from bench_py.run import preflight, space
from bench_py.run.abort import Aborted, check_abort, read_abort, request_abort
from bench_py.run.measurements import write_measurements
from bench_py.run.state import State, StateStore


class PhaseFailed(RuntimeError):
    """The phase could not do its work; the run has been moved to the state that says so."""


REFERENCE_COPY = "reference.wav"


def _read(run_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], json.loads((run_dir / f"{name}.json").read_text()))
    except FileNotFoundError:
        return None


def _write(run_dir: Path, name: str, data: dict[str, Any]) -> None:
    atomic_write_json(run_dir / f"{name}.json", data)


def make_run_id(candidate: str, host: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    clean_host = "".join(ch if ch.isalnum() else "-" for ch in host.split(".")[0]).upper()
    return f"BENCHMARK-{candidate.upper()}-{clean_host}-{stamp}"


class Run:
    """One run on this host: its state store, run directory and resolved configuration."""

    def __init__(self, store: StateStore, run_id: str, project_dir: Path) -> None:
        self.store, self.run_id, self.project_dir = store, run_id, project_dir
        self.dir = store.run_dir(run_id)
        # The install path that came up in STARTING: BENCHING times this very one (2C's model is
        # loaded once, in this process).
        self.ready_path: paths.InstallPath | None = None
        from bench_py.config.model import load_file

        self.config: Config = load_file(str(self.dir / "config.json"))

    def run_phase(self, phase: str, reason: str = "aborted") -> dict[str, Any]:
        """One phase (or the abort), as ``voxbench run`` walks them: a full disk anywhere ends the
        run through teardown, into the space the released reserve gives back."""
        try:
            with self._disk_full_is_an_abort():
                return self.abort(reason) if phase == "abort" else getattr(self, phase)()
        except Aborted as error:
            raise self._aborted(error) from None

    # -- aborts and the gate ------------------------------------------------------------------
    @contextlib.contextmanager
    def _disk_full_is_an_abort(self) -> Iterator[None]:
        """ENOSPC (or a quota) from any write becomes an abort by ``disk_full``; the reserve is
        released first so that the flag and every closing document fit."""
        try:
            yield
        except OSError as error:
            if not space.is_disk_full(error):
                raise
            reason = space.disk_full_reason(error, self.dir)
            freed = space.release_reserve(self.dir)
            evidence = {"path": error.filename, "reserve_released_bytes": freed}
            raise Aborted(request_abort(self.dir, "disk_full", reason, evidence)) from None

    def _check_abort(self) -> None:
        check_abort(self.dir)

    def _aborted(self, error: Aborted) -> PhaseFailed:
        """Tear down (from STARTING or BENCHING), record ERROR_ABORTED, and say so."""
        self.abort(str(error))
        return PhaseFailed(f"run aborted by {error}")

    def _gate(self, phase: str) -> Any:
        """The co-tenant gate for a phase, or a no-op where it does not apply (pause-gemma, disabled)."""
        import contextlib

        gate_cfg = self.config.cotenant.gate
        baseline = ((_read(self.dir, "baseline") or {}).get("latency_ms") or {}).get("p50")
        if not gate_cfg.enabled or self.config.gemma_mode != "parallel" or not baseline:
            return contextlib.nullcontext(None)

        def trip(reason: str, evidence: dict[str, Any]) -> None:
            request_abort(self.dir, "cotenant_gate", reason, evidence)

        return CotenantGate(
            self.cotenant,
            baseline,
            gate_cfg.interval_s,
            gate_cfg.window,
            gate_cfg.max_ratio,
            trip,
            phase=lambda: phase,
        )

    def _record_gate(self, phase: str, gate: CotenantGate | None) -> None:
        if gate is None:
            return
        records = (_read(self.dir, "gate") or {"phases": []})["phases"]
        records.append({"phase": phase, **gate.results()})
        _write(self.dir, "gate", {"phases": records})

    # -- PREFLIGHT ----------------------------------------------------------------------------
    def preflight(self) -> dict[str, Any]:
        self.store.expect(self.run_id, State.PREFLIGHT)
        try:
            self._check_abort()
        except Aborted as error:
            raise self._aborted(error) from None
        result = preflight.run_preflight(self.config, self.project_dir)
        _write(self.dir, "preflight", result)
        if not result["ok"]:
            blocked = preflight.blocked_paths(result)
            if blocked:  # every path's status and reason, as STARTING would have recorded them
                _write(
                    self.dir,
                    "candidate",
                    {"paths": blocked, "selected": None, "order": list(self.config.candidate.install_paths)},
                )
            reason = " ".join(result["failures"])
            self.store.transition(self.run_id, State.ERROR_ABORTED, f"preflight failed: {reason}")
            self.finish(aborted=True)
            raise PhaseFailed(reason)
        # Room for the closing documents, should the disk fill up mid-run (released at the end).
        space.make_reserve(self.dir, int(self.config.preflight.disk_reserve_mb * 2**20))
        # The verified clip travels with the run: the listening page plays it, the branch keeps it.
        shutil.copyfile(self._reference_wav(), self.dir / REFERENCE_COPY)
        self.store.transition(self.run_id, State.BASELINE, f"preflight passed; rule sealed {result['rule']['sha256']}")
        return result

    # -- BASELINE -----------------------------------------------------------------------------
    @property
    def cotenant(self) -> Any:
        """The co-tenant's configuration with its model named (BASELINE asked its server which)."""
        model = (_read(self.dir, "baseline") or {}).get("model")
        return self.config.cotenant.model_copy(update={"model": model}) if model else self.config.cotenant

    def baseline(self) -> dict[str, Any]:
        self.store.expect(self.run_id, State.BASELINE)
        try:
            cfg = cotenant.resolve_model(self.config.cotenant)
            result = cotenant.measure_latency(cfg, cfg.probes, cfg.warmup)
        except cotenant.CotenantUnreachable as error:
            _write(self.dir, "baseline", {"ok": False, "error": str(error)})
            self.store.transition(self.run_id, State.ERROR_ABORTED, str(error))
            self.finish(aborted=True)
            raise PhaseFailed(str(error)) from None
        result["ok"] = True
        _write(self.dir, "baseline", result)
        p50 = result["latency_ms"]["p50"]
        try:
            self._check_abort()
        except Aborted as error:
            raise self._aborted(error) from None
        note = ""
        if self.config.gemma_mode == "pause-gemma":
            self._pause_cotenant()
            note = "; co-tenant paused (pause-gemma)"
        self.store.transition(self.run_id, State.STARTING, f"co-tenant baseline p50 {p50:.1f} ms{note}")
        return result

    def _pause_cotenant(self) -> None:
        control = self.config.cotenant.control
        # Recorded before it happens: recovery must be able to undo a pause even if we die mid-stop.
        pause = {"kind": control.kind, "name": control.name, "stopped_at": now_iso(), "restored": False}
        self.store.update(self.run_id, changes={"cotenant_paused": pause})
        try:
            cotenant.control_cotenant(control.kind, control.name, "stop", self.config.preflight.docker_url)
        except cotenant.ControlError as error:
            self.abort(f"could not pause the co-tenant: {error}")
            raise PhaseFailed(f"could not pause the co-tenant: {error}") from None

    # -- STARTING -----------------------------------------------------------------------------
    def _path_context(self) -> paths.Context:
        return paths.Context(
            self.run_id,
            self.config.candidate,
            Path(self.config.paths.token_file).expanduser(),
            self.dir,
            self.config.preflight.docker_url,
            self._check_abort,
            lambda change: self.store.update(self.run_id, changes=change),
            self.config.allow_standin_engines,
            self.config.teardown.grace_s,
        )

    def _reference_wav(self) -> str:
        entry = (_read(self.dir, "preflight") or {}).get("checks", [])
        for check in entry:
            if check["name"] == "reference" and check.get("detail"):
                return cast(str, check["detail"]["path"])
        raise PhaseFailed("the preflight record has no verified reference clip")

    def _selected(self) -> dict[str, Any]:
        return next((p for p in (_read(self.dir, "candidate") or {}).get("paths", []) if p.get("status") == "ok"), {})

    def _candidate_target(self) -> Any:
        """What the timed loops call, for the install path that passed (the HTTP API for 2A/2B)."""
        selected = self._selected()
        path = self.ready_path
        if path is None or path.name != selected.get("install_path"):  # BENCHING called without STARTING here
            path = paths.make(selected.get("install_path", "2A"), self._path_context())
        return path.target(selected.get("substitute_voice"), (selected.get("preset_voice") or {}).get("name"))

    def starting(self) -> dict[str, Any]:
        """Try the install paths in the configured order; the first that comes up with sane audio
        wins, the rest are recorded as skipped. Every path that did not work is stopped at once."""
        self.store.expect(self.run_id, State.STARTING)
        cfg = self.config.candidate
        ctx = self._path_context()
        license_check = paths.license_verdict(cfg)
        records: list[dict[str, Any]] = []
        selected: str | None = None

        def save() -> None:
            _write(
                self.dir,
                "candidate",
                {
                    "paths": records,
                    "selected": selected,
                    "order": list(cfg.install_paths),
                    "license": license_check,
                    "token_mode": cfg.token_mode,
                },
            )

        try:
            with self._gate("STARTING") as gate:
                try:
                    for name in cfg.install_paths:
                        record: dict[str, Any] = {
                            "install_path": name,
                            "kind": paths.PATH_KINDS[name],
                            "streaming_capable": paths.STREAMING[name],
                            "status": "failed",
                        }
                        records.append(record)
                        if selected:
                            record.update(status="skipped", reason=f"install path {selected} passed first")
                        elif license_check and not license_check["allowed"]:
                            record.update(status="disallowed_by_vendor", reason=license_check["reason"])
                        else:
                            self._check_abort()
                            self.store.update(self.run_id, phase={"name": "STARTING", "install_path": name})
                            if self._try_path(name, ctx, record):
                                selected = name
                        save()
                finally:
                    self._record_gate("STARTING", gate)
        except Aborted as error:
            save()
            raise self._aborted(error) from None
        if not selected:
            summary = "; ".join(f"{r['install_path']} {r['status']}: {r.get('reason')}" for r in records)
            self.store.transition(self.run_id, State.TEARDOWN, f"no install path worked: {summary}")
            return {"state": State.TEARDOWN, "paths": records}
        self.store.transition(self.run_id, State.BENCHING, f"install path {selected} ready and its audio is sane")
        return {"state": State.BENCHING, "paths": records}

    def _try_path(self, name: str, ctx: paths.Context, record: dict[str, Any]) -> bool:
        """Start one path, check its audio, probe cloning; on failure stop it and say why."""
        path: paths.InstallPath | None = None
        try:
            path = paths.make(name, ctx)
            record.update(path.start())
            record.setdefault("token", "file: HF_TOKEN_PATH names the token file")
            preset = (record.get("preset_voice") or {}).get("name")
            record["sanity"] = self._sanity_check(path.target(preset_voice=preset))
            if not record["sanity"]["ok"]:
                lines = path.log_lines()
                raise paths.PathError(
                    paths.classify_log(lines),
                    f"the audio sanity check failed: {record['sanity']['reason']}",
                    paths.interesting(lines),
                )
            if not path.streaming_capable:
                record.update(
                    cloning="preset_substitute",
                    cloning_probe={"supported": False, "reason": "this install path takes no reference audio"},
                    substitute_voice=None,
                )
            elif self.config.candidate.cloning_probe:
                record.update(self._probe_cloning(path, record.get("voices") or []))
                if record.get("process") and path.pids():  # a restarted 2B engine is a new process
                    record["process"]["pid"] = path.pids()[0]
            record["status"] = "ok"
            self.ready_path = path
            return True
        except paths.PathError as error:
            record.update(status=error.status, reason=error.reason, evidence=error.evidence)
        except Exception as error:
            # An abort or a full disk ends the run, not just this path: stop it and pass it on.
            if isinstance(error, Aborted) or space.is_disk_full(error):
                if path is not None:
                    record["teardown"] = path.stop()
                raise
            # An engine's unexpected failure is this path's evidence, not a crash.
            record.update(status="failed", reason=f"{type(error).__name__}: {error}")
        if path is not None:
            record["teardown"] = path.stop()
        return False

    def _probe_cloning(self, path: Any, voices: list[str]) -> dict[str, Any]:
        """One short, disposable ref_audio request. An engine that cannot clone refuses it (vLLM-Omni
        0.30 with the open weights: a 400 before generating) or fails inside and dies (0.18): the
        evidence tells which; a dead engine is restarted, and the preset closest to the reference
        stands in for the cloned condition either way."""
        cfg = self.config.candidate
        request = path.target().request("Hello, this is a cloning probe.", "cloned")
        # Not streamed: a streamed request's error surfaces mid-body (0.18 sends a 200 and cuts it);
        # asked whole, each release answers with its documented status and words.
        body = {key: value for key, value in request.body.items() if key not in ("stream", "stream_format")}
        probe: dict[str, Any] = {
            "request": "ref_audio, one short sentence, not streamed",
            "timeout_s": cfg.cloning_probe_timeout_s,
        }
        answer = speech_client.speak_once(
            dataclasses.replace(request, body=body, sse=False), timeout_s=cfg.cloning_probe_timeout_s
        )
        if answer.status:
            probe.update(status=answer.status, audio_s=round(answer.audio_s, 3) if answer.ok else 0.0)
            if answer.status != 200 or answer.error:
                probe["error"] = speech_client.server_words(answer.body_text) if answer.body_text else answer.error
        else:
            probe.update(status=None, error=answer.error)
        supported = probe.get("status") == 200 and probe.get("audio_s", 0) > 0.3
        probe["supported"] = supported
        if supported:
            return {"cloning": "native", "cloning_probe": probe}
        alive = paths.survives(path, cfg.cloning_probe_settle_s)
        probe["engine_state_after"] = "running" if alive else "exited"
        answered = f"answered HTTP {probe['status']}" if probe.get("status") else f"no answer ({probe.get('error')})"
        probe["outcome"] = f"{answered}; the engine {'kept serving' if alive else 'exited'}"
        probe["evidence"] = [line for line in path.log_lines() if "Error" in line or "Traceback" in line][-5:]
        if not alive:
            path.restart()
            probe["restarted"] = True
        sweep = self._preset_sweep(voices)
        if not sweep["spoke"]:  # a dead engine behind a live API (0.18's /health sees only the server)
            path.restart()
            probe["restarted"] = True
            sweep = self._preset_sweep(voices)
        if not sweep["spoke"]:
            raise paths.PathError(
                "failed",
                "after the cloning probe no preset voice produced audio, even after a restart",
                [f"{voice}: {why}" for voice, why in list(sweep["errors"].items())[:5]],
            )
        return {
            "cloning": "preset_substitute",
            "cloning_probe": probe,
            "preset_sweep": sweep,
            "substitute_voice": sweep["chosen"],
        }

    def _preset_sweep(self, voices: list[str]) -> dict[str, Any]:
        """Every preset voice the engine lists says one phrase; the one closest to the reference
        (the shared speaker-similarity scorer) becomes the cloned condition's substitute."""
        cfg = self.config.candidate
        base = f"http://127.0.0.1:{cfg.port}"
        phrase = "I can feel the fear that you carry around, and I wish I could help you let go of it."
        folder = self.dir / "preset-sweep"
        folder.mkdir(exist_ok=True)
        reference = read_wav_file(self._reference_wav())
        from bench_py.judge.similarity import SimilarityUnavailable, speaker_similarity

        scores: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        spoke = 0
        unavailable = None
        for voice in voices:
            if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", str(voice)):
                continue  # a name that cannot be a file name is skipped, never used in a path
            body = {"model": cfg.model, "input": phrase, "voice": voice, "response_format": "pcm"}
            request = SpeechRequest(f"{base}/v1/audio/speech", body, rate=cfg.sample_rate)
            answer = speech_client.speak_once(request, timeout_s=60)
            if not answer.ok:  # one voice's failure is a missing score, not the path's end
                scores[voice], errors[voice] = None, str(answer.error or f"HTTP {answer.status}")
                continue
            pcm = Pcm(answer.samples, answer.rate)
            if pcm.duration_s < 0.3:
                scores[voice], errors[voice] = None, f"{pcm.duration_s:.2f} s of audio"
                continue
            spoke += 1
            write_wav_file(str(folder / f"{voice}.wav"), pcm)
            try:
                scores[voice] = round(speaker_similarity(pcm, reference), 4)
            except SimilarityUnavailable as error:  # no scorer on this host: the sweep says so, the run goes on
                scores[voice], unavailable = None, str(error)
            except ValueError:  # under half a second of speech: not a voice to choose
                scores[voice] = None
        scored = {voice: score for voice, score in scores.items() if score is not None}
        ranked = sorted(scored, key=lambda voice: -scored[voice])
        chosen = ranked[0] if ranked else (voices[0] if voices else cfg.preset_voice)
        return {
            "phrase": phrase,
            "scores": scores,
            "chosen": chosen,
            "chosen_by": "speaker similarity to the reference" if ranked else "the first listed voice (no scores)",
            "wavs": "preset-sweep/",
            "unavailable": unavailable,
            "errors": errors,
            "spoke": spoke,
        }

    def _sanity_check(self, target: Any) -> dict[str, Any]:
        """One synthesis: speech must be there (not silent, not noise, not clipped) before timing it."""
        text = "This is a short sanity check of the candidate's voice."
        if getattr(target, "streaming", True) is False:
            return sanity.check(target.synthesize(text, "preset"))
        answer = speech_client.speak_once(target.request(text, "preset"), timeout_s=60)
        if not answer.status:
            return {"ok": False, "reason": f"no answer to the sanity request ({answer.error})"}
        if not answer.ok:
            return {"ok": False, "reason": str(answer.error)}
        return sanity.check(Pcm(answer.samples, answer.rate))

    # -- BENCHING -----------------------------------------------------------------------------
    def _memory_sources(self) -> list[Any]:
        """Every memory view of the candidate: NVML per process and device, its cgroup, the host."""
        ready = self._selected()
        container_id = (ready.get("container") or {}).get("id")
        if container_id:
            client = docker_client(self.config.preflight.docker_url)

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

    def _targets(self) -> dict[str, Any]:
        incumbent = incumbent_target(self.config.incumbent, self._reference_wav(), self.config.reference.name)
        return {"candidate": self._candidate_target(), "incumbent": incumbent}

    def _incumbent_unreachable(self, target: Any, timeouts: httpx.Timeout) -> str | None:
        """One short real request: None when the incumbent answers with audio, else why not."""

        async def probe() -> tuple[Any, Any]:
            async with httpx.AsyncClient(timeout=timeouts) as client:
                return await bench.one_request(client, target, "incumbent", "preset", 0, -1, "Hello.")

        record, _ = asyncio.run(probe())
        if record.ok and record.standin and not self.config.allow_standin_engines:
            return (
                f"the incumbent at {self.config.incumbent.url} is voxbench's stand-in ({record.standin}); "
                "set allow_standin_engines: true to measure it"
            )
        if record.ok:
            return None
        return f"the incumbent at {self.config.incumbent.url} did not answer: {record.error or record.status}"

    def _benching_targets(self, timeouts: httpx.Timeout, progress: Any) -> tuple[dict[str, Any], list[str], str | None]:
        """Both sides, or the candidate alone when the incumbent is skipped or does not answer
        (its takes are then listed for `voxbench baseline resume`)."""
        cfg = self.config.bench
        deferred_reason = "skip_baseline is set" if cfg.skip_baseline else None
        targets = {"candidate": self._candidate_target()}
        if deferred_reason is None:
            try:
                targets = self._targets()
                deferred_reason = self._incumbent_unreachable(targets["incumbent"], timeouts)
            except OSError as error:  # e.g. its token file cannot be read
                deferred_reason = f"the incumbent cannot be called: {error}"
        deferred: list[str] = []
        if deferred_reason:
            targets = {"candidate": targets["candidate"]}
            deferred = deferred_baseline.write_list(self.dir, cfg.utterances, list(cfg.conditions), deferred_reason)
            progress({"side": "incumbent", "deferred": deferred_reason})
        return targets, deferred, deferred_reason

    def benching(self) -> dict[str, Any]:
        self.store.expect(self.run_id, State.BENCHING)
        cfg = self.config.bench
        timeouts = httpx.Timeout(
            connect=cfg.timeouts.connect, read=cfg.timeouts.read, write=cfg.timeouts.write, pool=cfg.timeouts.pool
        )

        def progress(update: dict[str, Any]) -> None:
            self.store.update(self.run_id, phase={"name": "BENCHING", **update})

        if cfg.client_cpus:
            os.sched_setaffinity(0, set(cfg.client_cpus))  # keep the client off the co-tenant's CPUs
        kept: dict[str, list[bench.RequestRecord]] = {}  # every request taken, as it is taken
        sampler: MemorySampler | None = None
        try:
            # The gate watches from the first moment of BENCHING, the incumbent's probe included.
            with self._disk_full_is_an_abort(), self._gate("BENCHING") as gate:
                try:
                    targets, deferred, deferred_reason = self._benching_targets(timeouts, progress)
                    with MemorySampler(self._memory_sources(), cfg.memory_interval_s) as sampler:
                        records, load_result = self._timed_loops(targets, timeouts, progress, kept)
                finally:
                    self._record_gate("BENCHING", gate)
        except Aborted as error:
            # Without its traceback (whose frames hold the targets), so that teardown can let 2C's model go.
            stopped: Aborted | None = error.with_traceback(None)
        else:
            stopped = None
        if stopped is not None:
            targets = {}
            self._write_partial_bench(kept, sampler, str(stopped))
            raise self._aborted(stopped) from None
        fraction = bench.timeout_fraction(records["candidate"])
        selected = self._selected()
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
            "engine_loads": getattr(self.ready_path, "loads", None),
        }
        _write(self.dir, "bench", result)
        self.store.transition(self.run_id, State.TEARDOWN, f"timed loops finished; candidate timeouts {fraction:.0%}")
        return {"state": State.TEARDOWN, "phase3_passed": result["phase3_passed"], "summary": result["summary"]}

    def _write_partial_bench(
        self, kept: dict[str, list[bench.RequestRecord]], sampler: MemorySampler | None, why: str
    ) -> None:
        """An aborted BENCHING keeps what it had taken: every finished request and its WAV."""
        cfg = self.config.bench
        candidate = kept.get("candidate", [])
        partial = {
            "partial": True,
            "stopped_by": why,
            "install_path": self._selected().get("install_path"),
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
            _write(self.dir, "bench", partial)
        except OSError as error:
            if not space.is_disk_full(error):
                raise
            # Even the released reserve was not enough: the abort's own record still says why.

    @staticmethod
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

    def _stop_check(self) -> Any:
        """Before every timed request: an abort flag, or a dead engine (fatal: row 9 of the
        state machine) — timing a dead engine would record errors as if they were its answers."""
        # Read once for the whole loop: the selected path and a Docker client do not change.
        selected = self._selected()
        client = docker_client(self.config.preflight.docker_url) if selected.get("container") else None

        def check() -> None:
            self._check_abort()
            gone = self._engine_gone(selected, client)
            if gone:
                tail = [line for line in self._engine_log_tail() if line.strip()][-5:]
                request_abort(self.dir, "engine_failure", gone, {"log_tail": tail})
                self._check_abort()

        return check

    def _engine_log_tail(self) -> list[str]:
        selected = self._selected()
        try:
            return paths.make(selected["install_path"], self._path_context()).log_lines(20)
        except Exception:  # the evidence is a courtesy; the abort must happen regardless
            return []

    def _timed_loops(
        self, targets: dict[str, Any], timeouts: httpx.Timeout, progress: Any, kept: dict[str, Any]
    ) -> tuple[Any, Any]:
        cfg = self.config.bench
        should_stop = self._stop_check()
        records = bench.run(
            targets,
            cfg.utterances,
            cfg.conditions,
            cfg.repetitions,
            cfg.warmup,
            timeouts,
            self.dir / "wavs" if cfg.save_wavs else None,
            progress,
            cfg.audible_threshold_dbfs,
            should_stop,
            kept,
        )
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
        return records, load_result

    # -- TEARDOWN and abort ---------------------------------------------------------------------
    def _teardown_actions(self) -> dict[str, Any]:
        """Remove the run's engines, restore a paused co-tenant, then measure its recovery."""
        client = docker_client(self.config.preflight.docker_url)
        lost: list[str] = []  # evidence a full disk would not take: teardown goes on without it

        def evidence(what: str, write: Any, default: Any) -> Any:
            try:
                return write()
            except OSError as error:
                if not space.is_disk_full(error):
                    raise
                lost.append(f"{what}: {error.strerror}")
                return default

        logs = evidence("engine logs", lambda: container.save_logs(client, self.run_id, self.dir / "logs"), {})
        processes = self._stop_processes()
        for session in processes:  # 2B engines wrote their logs into the run directory
            log_file = self.dir / "logs" / f"{session['session']}.log"
            if log_file.is_file():
                logs[session["session"]] = log_file.read_text(errors="replace")
        context = {
            "image": self.config.candidate.image,
            "host_arch": platform.machine(),
            "model": self.config.candidate.model,
        }
        kernel_errors = evidence(
            "kernel-error diagnostic", lambda: diagnostics.write_report(self.dir, logs, context), None
        )
        removal = container.remove_run_containers(client, self.run_id, self.config.teardown.grace_s)
        removal["processes"] = processes
        removal["verified"] = removal["verified"] and all(p["verified"] for p in processes)
        removal["in_process"] = self._release_in_process_engine()
        restore = self._restore_cotenant()
        post = self._postflight(answered_after_restart=restore is not None)
        result = {
            "at": now_iso(),
            "removal": removal,
            "cotenant_restore": restore,
            "postflight": post,
            "engine_logs": sorted(f"logs/{name}.log" for name in logs),
            "kernel_errors": kernel_errors,
            "evidence_lost": lost,
        }
        _write(self.dir, "teardown", result)
        return result

    def _release_in_process_engine(self) -> dict[str, Any] | None:
        """2C's model lives in this process: let it go before the co-tenant comes back and is
        measured (on unified memory it is the co-tenant's memory), and say what that gave back."""
        if self.ready_path is None or self.ready_path.kind != "in_process":
            return None
        import gc

        rss = memory.ProcessRssSource(lambda: [os.getpid()])
        before = rss.read()
        stopped = self.ready_path.stop()
        self.ready_path = None
        gc.collect()
        after = rss.read()
        return {**stopped, "rss_before_bytes": before, "rss_after_bytes": after}

    def _stop_processes(self) -> list[dict[str, Any]]:
        """Every engine process this run started (2B), from the state file: TERM → KILL → verify."""
        recorded = self.store.load(self.run_id).changes.get("processes") or []
        recorded = [recorded] if isinstance(recorded, dict) else recorded
        grace = self.config.candidate.process.stop_grace_s
        return [paths.stop_session(p["session"], p.get("pid"), grace) for p in recorded]

    def _restore_cotenant(self) -> dict[str, Any] | None:
        """pause-gemma: start the co-tenant again (always, even when the run failed) and time the outage."""
        pause = self.store.load(self.run_id).changes.get("cotenant_paused")
        if not pause or pause.get("restored"):
            return None
        cfg = self.cotenant
        started_at = now_iso()
        try:
            cotenant.control_cotenant(pause["kind"], pause["name"], "start", self.config.preflight.docker_url)
        except cotenant.ControlError as error:
            return {"ok": False, "reason": str(error), "stopped_at": pause["stopped_at"], "start_at": started_at}
        self.store.update(self.run_id, changes={"cotenant_paused": {**pause, "restored": True}})
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

    def _postflight(self, answered_after_restart: bool = False) -> dict[str, Any]:
        """The co-tenant must be back within ``postflight_max_ratio`` × baseline within the window."""
        cfg = self.cotenant
        baseline = (_read(self.dir, "baseline") or {}).get("latency_ms", {}).get("p50")
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

    def teardown(self) -> dict[str, Any]:
        self.store.expect(self.run_id, State.TEARDOWN)
        result = self._teardown_actions()
        problems = []
        if not result["removal"]["verified"]:
            problems.append(f"removal not verified: {result['removal']}")
        if result["cotenant_restore"] and not result["cotenant_restore"]["ok"]:
            problems.append(f"co-tenant not restored: {result['cotenant_restore']['reason']}")
        if not result["postflight"]["ok"]:
            problems.append(f"co-tenant did not recover: {result['postflight']['reason']}")
        if problems:
            self.store.transition(self.run_id, State.ERROR_ABORTED, "; ".join(problems))
            self.finish(aborted=True)
            raise PhaseFailed("; ".join(problems))
        self.store.transition(self.run_id, State.DONE, "engines verified gone, co-tenant within bounds")
        return self.finish(aborted=False)

    def abort(self, reason: str) -> dict[str, Any]:
        """Operator abort or fatal failure: teardown and post-flight first, then ERROR_ABORTED."""
        current = self.store.load(self.run_id)
        if current.terminal and not current.changes.get("files_written"):
            return self.finish(aborted=current.state == State.ERROR_ABORTED)  # the disk filled mid-finish
        if current.terminal:
            return {"state": current.state, "already": True}
        if current.state in (State.STARTING, State.BENCHING, State.TEARDOWN):
            self._teardown_actions()
        self.store.transition(self.run_id, State.ERROR_ABORTED, reason)
        return self.finish(aborted=True)

    def _incumbent_standin(self) -> str | None:
        """The stand-in the incumbent said it was in any answer it gave, or None."""
        records = ((_read(self.dir, "bench") or {}).get("records") or {}).get("incumbent") or []
        return next((r["standin"] for r in records if r.get("standin")), None)

    def _cpu_layout(self) -> dict[str, Any]:
        """Which CPUs each party ran on: separate CPUs keep honest contention from tripping the gate."""
        layout: dict[str, Any] = {
            "candidate": self.config.candidate.cpuset_cpus,
            "client": self.config.bench.client_cpus,
            "cotenant": None,
        }
        control = self.config.cotenant.control
        if control.kind == "container" and control.name:
            try:
                client = docker_client(self.config.preflight.docker_url)
                layout["cotenant"] = client.containers.get(control.name).attrs["HostConfig"].get("CpusetCpus") or None
            except Exception as error:
                layout["cotenant"] = f"unknown ({type(error).__name__})"
        return layout

    def finish(self, aborted: bool) -> dict[str, Any]:
        """Assemble measurements.json from the phase files (validated against its schema)."""
        space.release_reserve(self.dir)  # the run is over: its reserve's space is the documents' now
        state = self.store.load(self.run_id)
        measurements = {
            "schema": "voxbench/measurements/v0",
            "run_id": self.run_id,
            "voxbench_version": __version__,
            "host": {"name": socket.gethostname(), "arch": platform.machine(), "python": platform.python_version()},
            "created_at": state.created_at,
            "final_state": str(state.state),
            "reason": state.reason,
            "aborted": aborted,
            "history": state.history,
            "gemma_mode": self.config.gemma_mode,
            "profile": self.config.profile,
            "candidate": {
                "name": self.config.candidate.name,
                "model": self.config.candidate.model,
                # What answered, not what was configured: a stand-in is named whatever the config says.
                "standin": bool(self._selected().get("standin")),
                "standin_evidence": self._selected().get("standin"),
                "where": socket.gethostname(),
            },
            "incumbent": {
                "name": self.config.incumbent.name,
                "api": self.config.incumbent.api,
                "url": self.config.incumbent.url,
                "standin": self._incumbent_standin() is not None,
                "standin_evidence": self._incumbent_standin(),
                "where": self.config.incumbent.host,
            },
            "preflight": _read(self.dir, "preflight"),
            "baseline": _read(self.dir, "baseline"),
            "install_paths": _read(self.dir, "candidate"),
            "bench": _read(self.dir, "bench"),
            "teardown": _read(self.dir, "teardown"),
            "cotenant": {
                "gate": (_read(self.dir, "gate") or {}).get("phases", []),
                "paused": state.changes.get("cotenant_paused"),
            },
            "cpu_layout": self._cpu_layout(),
            "abort": read_abort(self.dir),
        }
        write_measurements(self.dir / "measurements.json", measurements)
        from bench_py.results.report import write_verdict

        verdict = write_verdict(self.dir)
        # The watcher collects once this is set: the files above are complete.
        self.store.update(self.run_id, changes={"files_written": now_iso()})
        return {"state": str(state.state), "verdict": verdict["verdict"], "measurements": str(self.dir)}
