"""The run as every phase sees it: its state store, run directory and resolved configuration, the
documents the phases write into that directory, and what they all share — the abort flag, a full
disk turned into an abort, and the co-tenant gate."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from bench_py.config.model import Config, load_file
from bench_py.engines import paths
from bench_py.files import atomic_write_json
from bench_py.measure.gate import CotenantGate
from bench_py.run import space
from bench_py.run.abort import Aborted, check_abort, request_abort
from bench_py.run.state import StateStore


class PhaseFailed(RuntimeError):
    """The phase could not do its work; the run has been moved to the state that says so."""


class RunContext:
    """One run on this host: its state store, run directory and resolved configuration."""

    def __init__(self, store: StateStore, run_id: str, project_dir: Path) -> None:
        self.store, self.run_id, self.project_dir = store, run_id, project_dir
        self.dir = store.run_dir(run_id)
        # The install path that came up in STARTING: BENCHING times this very one (2C's model is
        # loaded once, in this process).
        self.ready_path: paths.InstallPath | None = None
        self.config: Config = load_file(str(self.dir / "config.json"))

    # -- the run's documents ------------------------------------------------------------------
    def read(self, name: str) -> dict[str, Any] | None:
        """``<name>.json`` from the run directory, or None when that phase has not written it."""
        try:
            return cast(dict[str, Any], json.loads((self.dir / f"{name}.json").read_text()))
        except FileNotFoundError:
            return None

    def write(self, name: str, data: dict[str, Any]) -> None:
        atomic_write_json(self.dir / f"{name}.json", data)

    def selected(self) -> dict[str, Any]:
        """The install path that passed STARTING, as ``candidate.json`` records it, or {}."""
        return next((p for p in (self.read("candidate") or {}).get("paths", []) if p.get("status") == "ok"), {})

    def reference_wav(self) -> str:
        """The reference clip PREFLIGHT verified."""
        entry = (self.read("preflight") or {}).get("checks", [])
        for check in entry:
            if check["name"] == "reference" and check.get("detail"):
                return cast(str, check["detail"]["path"])
        raise PhaseFailed("the preflight record has no verified reference clip")

    @property
    def cotenant(self) -> Any:
        """The co-tenant's configuration with its model named (BASELINE asked its server which)."""
        model = (self.read("baseline") or {}).get("model")
        return self.config.cotenant.model_copy(update={"model": model}) if model else self.config.cotenant

    def path_context(self) -> paths.Context:
        """What an install path is given: this run's id, configuration, directory and abort check."""
        return paths.Context(
            self.run_id,
            self.config.candidate,
            Path(self.config.paths.token_file).expanduser(),
            self.dir,
            self.config.preflight.docker_url,
            self.check_abort,
            lambda change: self.store.update(self.run_id, changes=change),
            self.config.allow_standin_engines,
            self.config.teardown.grace_s,
        )

    # -- aborts and the gate ------------------------------------------------------------------
    def check_abort(self) -> None:
        check_abort(self.dir)

    @contextlib.contextmanager
    def disk_full_is_an_abort(self) -> Iterator[None]:
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

    def gate(self, phase: str) -> Any:
        """The co-tenant gate for a phase, or a no-op where it does not apply (pause-gemma, disabled)."""
        gate_cfg = self.config.cotenant.gate
        recorded = self.read("baseline") or {}
        baseline = (recorded.get("latency_ms") or {}).get("p50")
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
            baseline_server_p50=(recorded.get("server_ms") or {}).get("p50"),
        )

    def record_gate(self, phase: str, gate: CotenantGate | None) -> None:
        """What the gate saw during a phase, added to ``gate.json``."""
        if gate is None:
            return
        records = (self.read("gate") or {"phases": []})["phases"]
        records.append({"phase": phase, **gate.results()})
        self.write("gate", {"phases": records})
