"""The command line's ``--json`` outputs as pydantic models, version 0 (``voxbench bench --json``,
``voxbench status --json``): their schemas are published beside the run documents'."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from bench_py.documents.models import FinalState, NonNegativeInt, Number, Open, RunId, _document


class SideFigures(Open):
    """One side's headline figures in one voice condition."""

    requests: NonNegativeInt
    ok: NonNegativeInt
    timeouts: NonNegativeInt
    ttfa_ms_p50: Number | None
    total_ms_p50: Number | None
    rtf_p50: Number | None


class Utterance(Open):
    """A sentence of the timed loop, by index."""

    id: int
    text: str


class CotenantFigures(Open):
    """The co-tenant's latency before the run and after its teardown."""

    baseline_p50_ms: Any
    postflight_p50_ms: Any
    postflight_ratio: Any


class Figures(Open):
    """The run's headline figures (``voxbench report``'s facts)."""

    run_id: Any
    final_state: Any
    verdict: Any
    verdict_reason: Any
    rule_sha256: Any
    gemma_mode: Any
    sides: dict[str, dict[str, SideFigures]]
    cotenant: CotenantFigures
    utterances: list[Utterance]
    rule: Any
    verdict_detail: Any
    run_dir: Any


class BenchOutput(Open):
    """One finished run's headline figures, as the collector returned them."""

    model_config = ConfigDict(
        title="voxbench bench --json, version 0",
        json_schema_extra=_document("cli-bench"),
    )

    schema_: Literal["voxbench/cli-bench/v0"] = Field(alias="schema")
    run_id: RunId
    final_state: FinalState
    verdict: str | None
    figures: Figures


class RunStatus(Open):
    """One run on a host: its state and whether it was collected."""

    run_id: Any
    state: Literal["PREFLIGHT", "BASELINE", "STARTING", "BENCHING", "TEARDOWN", "DONE", "ERROR_ABORTED"]
    terminal: bool
    reason: Any
    phase: Any
    created_at: Any
    collected: bool


class HostStatus(Open):
    """A GPU host: who holds it now, and its newest runs."""

    holder: str | None
    runs: list[RunStatus]


class StatusOutput(Open):
    """What is running on each GPU host, and its newest runs."""

    model_config = ConfigDict(
        title="voxbench status --json, version 0",
        json_schema_extra=_document("cli-status"),
    )

    schema_: Literal["voxbench/cli-status/v0"] = Field(alias="schema")
    hosts: dict[str, HostStatus]
