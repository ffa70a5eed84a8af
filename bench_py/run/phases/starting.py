"""STARTING: the install paths in their configured order, until one comes up with sane audio —
its audio sanity check, its cloning probe and, where it cannot clone, the preset voice sweep
that picks the cloned condition's substitute."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from bench_py.audio import Pcm, read_wav_file, write_wav_file
from bench_py.engines import paths, sanity
from bench_py.engines.http import SpeechRequest
from bench_py.measure import client as speech_client
from bench_py.processes import process_start
from bench_py.run import space
from bench_py.run.abort import Aborted
from bench_py.run.phases import closing
from bench_py.run.phases.context import RunContext
from bench_py.run.state import State


def starting(run: RunContext) -> dict[str, Any]:
    """Try the install paths in the configured order; the first that comes up with sane audio
    wins, the rest are recorded as skipped. Every path that did not work is stopped at once."""
    run.store.expect(run.run_id, State.STARTING)
    cfg = run.config.candidate
    ctx = run.path_context()
    license_check = paths.license_verdict(cfg)
    records: list[dict[str, Any]] = []
    selected: str | None = None

    def save() -> None:
        run.write(
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
        with run.gate("STARTING") as gate:
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
                        run.check_abort()
                        run.store.update(run.run_id, phase={"name": "STARTING", "install_path": name})
                        if _try_path(run, name, ctx, record):
                            selected = name
                    save()
            finally:
                run.record_gate("STARTING", gate)
    except Aborted as error:
        save()
        raise closing.aborted_by(run, error) from None
    if not selected:
        summary = "; ".join(f"{r['install_path']} {r['status']}: {r.get('reason')}" for r in records)
        run.store.transition(run.run_id, State.TEARDOWN, f"no install path worked: {summary}")
        return {"state": State.TEARDOWN, "paths": records}
    run.store.transition(run.run_id, State.BENCHING, f"install path {selected} ready and its audio is sane")
    return {"state": State.BENCHING, "paths": records}


def _try_path(run: RunContext, name: str, ctx: paths.Context, record: dict[str, Any]) -> bool:
    """Start one path, check its audio, probe cloning; on failure stop it and say why."""
    path: paths.InstallPath | None = None
    try:
        path = paths.make(name, ctx)
        record.update(path.start())
        record.setdefault("token", "file: HF_TOKEN_PATH names the token file")
        preset = (record.get("preset_voice") or {}).get("name")
        record["sanity"] = _sanity_check(path.target(preset_voice=preset))
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
        elif run.config.candidate.cloning_probe:
            record.update(_probe_cloning(run, path, record.get("voices") or []))
            if record.get("process") and path.pids():  # a restarted 2B engine is a new process
                record["process"]["pid"] = path.pids()[0]
                record["process"]["pid_start"] = process_start(record["process"]["pid"])
        record["status"] = "ok"
        run.ready_path = path
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


def _probe_cloning(run: RunContext, path: Any, voices: list[str]) -> dict[str, Any]:
    """One short, disposable ref_audio request. An engine that cannot clone refuses it (vLLM-Omni
    0.30 with the open weights: a 400 before generating) or fails inside and dies (0.18): the
    evidence tells which; a dead engine is restarted, and the preset closest to the reference
    stands in for the cloned condition either way."""
    cfg = run.config.candidate
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
    sweep = _preset_sweep(run, voices)
    if not sweep["spoke"]:  # a dead engine behind a live API (0.18's /health sees only the server)
        path.restart()
        probe["restarted"] = True
        sweep = _preset_sweep(run, voices)
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


def _preset_sweep(run: RunContext, voices: list[str]) -> dict[str, Any]:
    """Every preset voice the engine lists says one phrase; the one closest to the reference
    (the shared speaker-similarity scorer) becomes the cloned condition's substitute."""
    cfg = run.config.candidate
    base = f"http://127.0.0.1:{cfg.port}"
    phrase = "I can feel the fear that you carry around, and I wish I could help you let go of it."
    folder = run.dir / "preset-sweep"
    folder.mkdir(exist_ok=True)
    from bench_py.judge.similarity import ReferenceScorer, SimilarityUnavailable

    scores: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    spoken: dict[str, Pcm] = {}
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
        scores[voice], spoken[voice] = None, pcm  # scored below, with the others
        write_wav_file(str(folder / f"{voice}.wav"), pcm)
    # Scored together once all have spoken: one encoder pass, the reference embedded once.
    try:
        scorer = ReferenceScorer(read_wav_file(run.reference_wav()))
        similarities = scorer.score_many(list(spoken.values())) if spoken else []
    except SimilarityUnavailable as error:  # no scorer on this host: the sweep says so, the run goes on
        similarities, unavailable = [], str(error)
    for voice, similarity in zip(spoken, similarities, strict=False):
        if isinstance(similarity, float):  # else under half a second of speech: not a voice to choose
            scores[voice] = round(similarity, 4)
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
        "spoke": len(spoken),
    }


def _sanity_check(target: Any) -> dict[str, Any]:
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
