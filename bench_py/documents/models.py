"""The run's documents as pydantic models: the one description of each file, version 0.

The published JSON Schemas (``bench_py/schemas/*.v0.json``, ``docs/schemas/``) are generated from
these models (:mod:`bench_py.documents.schemas`), and :mod:`bench_py.documents` validates every
file against them on write and on read, then parses it into its model for the readers.

A model says what the version 0 schema says and no more: the fields it requires, their types,
enums, patterns and bounds, and whether other keys may appear. Where the schema leaves a field
untyped the model types it ``Any``; where it leaves an object open the model keeps the other keys
(``extra="allow"``), and a reader asks for one of those by name with :meth:`Open.extra`.

Numbers keep the type they were written with (``5`` stays ``5``, never ``5.0``), so a model dumped
with :func:`bench_py.documents.dump` gives back exactly the JSON it was read from. (One exception,
which no writer of these files produces: an integer field written as ``5.0``, which JSON Schema
counts as an integer, is read as ``5``.)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, model_validator
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

VERSION = "v0"
RUN_ID_PATTERN = r"^BENCHMARK-[A-Z0-9_-]+-[A-Z0-9-]+-[0-9]{8}-[0-9]{6}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
VERDICT_PATTERN = r"^(inconclusive|swap_candidate|pending_listening|aarch64_vllm_omni_unverified|keep_[a-z0-9_-]+)$"
LISTENER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _number(value: Any) -> float:
    """A JSON number as written: an int stays an int (pydantic's float would make it 5.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a number")
    return value


def _non_negative(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError("Input should be greater than or equal to 0")
    return number


def _as_read(value: Any) -> Any:
    return value


_KEEP = PlainSerializer(_as_read, return_type=Any)  # float's serializer would write an int back as 5.0
#: A JSON number (``"type": "number"``), kept as written.
Number = Annotated[float, PlainValidator(_number), _KEEP, WithJsonSchema({"type": "number"})]
#: A JSON number ``>= 0``, kept as written.
NonNegativeNumber = Annotated[
    float, PlainValidator(_non_negative), _KEEP, WithJsonSchema({"type": "number", "minimum": 0})
]
NonNegativeInt = Annotated[int, Field(ge=0)]
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
FinalState = Literal["DONE", "ERROR_ABORTED"]


class Open(BaseModel):
    """An object that may carry keys its schema does not name; they are kept, in order."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True, validate_by_name=True)

    def extra(self, key: str, default: Any = None) -> Any:
        """A key the schema does not name (``dict.get`` semantics): what the file holds, untyped."""
        return (self.__pydantic_extra__ or {}).get(key, default)


class Closed(BaseModel):
    """An object whose schema names every key it may carry (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)


def _document(kind: str) -> dict[str, Any]:
    """The root of a published schema: its dialect and ``$id`` (the title is the model's)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"voxbench/{kind}/{VERSION}"}


# -- measurements ------------------------------------------------------------------------------


class Host(Open):
    """The GPU host the run measured on."""

    name: Any
    arch: Any


class HistoryEntry(Open):
    """One transition of the run's state machine."""

    to: Any
    at: Any
    reason: Any


class Side(Open):
    """An engine of the comparison (the candidate or the incumbent) and where it ran."""

    name: Any
    standin: Any
    where: Any


class Check(Open):
    """One PREFLIGHT check."""

    name: Any
    ok: Any
    message: Any


class SealedRule(Open):
    """The decision rule as sealed at PREFLIGHT: its text, thresholds and their sha256."""

    text: Any
    thresholds: Any
    sha256: Sha256


class Preflight(Open):
    """What PREFLIGHT checked, and the rule it sealed."""

    ok: Any
    checks: list[Check]
    rule: SealedRule


class Summary(Open):
    """Pooled statistics of a set of samples."""

    n: NonNegativeInt
    method: Any
    p50: Number | SkipJsonSchema[None] = None


class Baseline(Open):
    """The co-tenant's latency before the candidate started."""

    ok: Any
    latency_ms: Summary | SkipJsonSchema[None] = None
    samples: list[Any] | SkipJsonSchema[None] = None


class InstallPath(Open):
    """One install path tried, and what became of it."""

    install_path: Literal["2A", "2B", "2C", "2D"]
    streaming_capable: bool
    status: Literal["ok", "blocked", "unsupported", "disallowed_by_vendor", "failed", "skipped"]
    reason: str | None = None
    evidence: list[str] | SkipJsonSchema[None] = None


class InstallPaths(Open):
    """The install paths tried, in order, and the one that reached BENCHING (``selected``)."""

    paths: list[InstallPath]
    selected: Any


class Chunks(Open):
    """How the response's audio arrived in reads."""

    count: Any
    chunk_ms: Any


class Record(Open):
    """One request of the timed loop (or its warmup)."""

    side: Any
    condition: Any
    utterance: Any
    repetition: Any
    warmup: Any
    ok: Any
    timed_out: Any
    ttfb_ms: NonNegativeNumber | None
    ttfa_ms: NonNegativeNumber | None
    total_ms: NonNegativeNumber
    audio_s: NonNegativeNumber
    samples: NonNegativeInt
    sample_rate: Annotated[int, Field(ge=1)]
    rtf: NonNegativeNumber | None
    ttfa_audible_ms: NonNegativeNumber | None
    underruns: NonNegativeInt
    underrun_ms: Any
    chunks: Chunks
    audible_threshold_dbfs: Any
    arrivals: list[tuple[NonNegativeNumber, NonNegativeInt]] | SkipJsonSchema[None] = Field(
        None, description="the raw stream timeline: [ms since the request was sent, samples in that read]"
    )
    clock: Literal["kernel", "monotonic"] | SkipJsonSchema[None] = Field(
        None,
        description="kernel: arrival times are the kernel's receive stamps (SO_TIMESTAMPNS); monotonic: read in "
        "user space",
    )
    delivery: Literal["whole", "streamed"] | None = Field(
        None, description="whole: the server sent one sized body; streamed: a chunked body, sent as synthesized"
    )
    rate_source: Literal["headers", "wav header", "documented", "default"] | None = Field(
        None,
        description="where sample_rate came from: the response's headers, a WAV header, the engine's documented rate",
    )
    standin: str | None = Field(None, description="the stand-in the server said it was (X-Voxbench-Standin), if any")


class MemoryAvailable(Open):
    """A memory source that was sampled."""

    available: Literal[True]
    peak: Any
    baseline: Any
    peak_delta: Any
    timeline: Any
    unit: Any


class MemoryUnavailable(Open):
    """A memory source that could not be sampled, and why."""

    available: Literal[False]
    reason: Any


#: One memory source: sampled (``available: true``) or not, and why.
MemorySource = MemoryAvailable | MemoryUnavailable


class Memory(Open):
    """The candidate's memory during BENCHING, per source."""

    sources: dict[str, MemorySource]


class Bench(Open):
    """BENCHING: every request, its summaries, and memory."""

    utterances: Any
    conditions: Any
    repetitions: Any
    records: dict[str, list[Record]]
    summary: Any
    candidate_timeout_fraction: Any
    phase3_passed: Any
    memory: Memory


class Teardown(Open):
    """TEARDOWN: what was removed, and the co-tenant after the run."""

    removal: Any
    postflight: Any


class GateProbe(Open):
    """One probe of the co-tenant gate: a chat completion timed by the client, and the server's share."""

    at_s: Number = Field(description="monotonic time the probe was sent (s)")
    latency_ms: NonNegativeNumber | None = Field(description="client-side latency; null: the probe failed")
    server_ms: NonNegativeNumber | None = Field(description="the co-tenant's own time for it, when known")
    status: Any
    server_source: Literal["header", "metrics"] | None = Field(
        None,
        description="where server_ms came from: the X-Server-Processing-Ms header, or the delta of vLLM's "
        "vllm:e2e_request_latency_seconds histogram around the probe (GET /metrics)",
    )
    path_ms: Number | None = Field(
        None, description="latency_ms - server_ms: the network and the probing side, when both are known"
    )


class GateTrip(Open):
    """Why the gate tripped: the window, where its time went, and how long detection took."""

    cause: Literal["cotenant", "path", "unreachable", "unknown"] = Field(
        description="cotenant: the server-side p50 (with the path as at BASELINE) passes the line; path: it "
        "does not, the time past the line was spent between client and server; unreachable: most probes "
        "failed; unknown: too few probes carry a server-side time"
    )
    reason: str
    client_p50_ms: NonNegativeNumber | None
    server_p50_ms: NonNegativeNumber | None
    baseline_path_ms: NonNegativeNumber
    line_ms: NonNegativeNumber = Field(description="the abort line: max_ratio x the baseline p50")
    window: list[GateProbe]
    first_over_at_s: Number = Field(description="when the window's first probe over the line was sent")
    tripped_at_s: Number
    detection_delay_s: NonNegativeNumber = Field(description="tripped_at_s - first_over_at_s")


class GatePhase(Open):
    """What the gate saw during one phase (STARTING or BENCHING)."""

    phase: str
    interval_s: NonNegativeNumber
    window: Annotated[int, Field(ge=1)]
    max_ratio: NonNegativeNumber
    baseline_p50_ms: NonNegativeNumber
    tripped: bool
    probes: list[GateProbe]
    line_ms: NonNegativeNumber | SkipJsonSchema[None] = None
    trip: GateTrip | None = None
    metrics_note: str | None = Field(
        None, description="why the co-tenant's /metrics gave no server-side time, if it was tried and did not"
    )


class CotenantRecord(Open):
    """The co-tenant during the run: the gate's phases and whether voxbench paused it."""

    gate: list[GatePhase]
    paused: Any


class Measurements(Open):
    """Everything a run measured, with raw samples. Immutable once TEARDOWN ends."""

    model_config = ConfigDict(
        title="voxbench measurements, version 0",
        json_schema_extra=_document("measurements"),
    )

    schema_: Literal["voxbench/measurements/v0"] = Field(alias="schema")
    run_id: RunId
    voxbench_version: str
    host: Host
    created_at: str
    final_state: FinalState
    reason: str | None = None
    aborted: bool
    history: list[HistoryEntry]
    gemma_mode: Literal["parallel", "pause-gemma"]
    profile: str | SkipJsonSchema[None] = None
    candidate: Side
    incumbent: Side
    preflight: Preflight | None
    baseline: Baseline | None
    install_paths: InstallPaths | None
    bench: Bench | None
    teardown: Teardown | None
    cotenant: CotenantRecord | SkipJsonSchema[None] = None


# -- verdict -----------------------------------------------------------------------------------


class Verdict(Closed):
    """Derived from measurements and scores by the sealed rule's table (first applicable row wins);
    recomputable at any time."""

    model_config = ConfigDict(title="voxbench verdict, version 0", json_schema_extra=_document("verdict"))

    verdict: Annotated[str, Field(pattern=VERDICT_PATTERN)]
    row: Annotated[int, Field(ge=1, le=8)]
    reason: str
    rule_sha256: Sha256 | None
    evidence: dict[str, Any]
    statistics: dict[str, Any] | None = None
    inputs: dict[str, str | None] | SkipJsonSchema[None] = Field(
        None,
        description="sha256 of each file the verdict was derived from (null: absent); a stored verdict whose "
        "inputs still match must recompute to the same verdict",
    )


# -- scores ------------------------------------------------------------------------------------

_ANSWER = ("listener", "simulated", "pair", "clip", "score")
_NOT_BLIND = "never in a blind answer: a record carrying it is refused"


class ScoreRecord(Closed):
    """An answer: a registered listener's 1-5 score for one clip of one pair of the sealed blind
    session, named by opaque ids. A refused answer is kept too, with `refused` saying why; it never
    counts. Only answers written before the reveal (inside the prefix of this file the reveal sealed
    by sha256) count. A record that names a side, utterance or condition is not blind: it is read,
    listed as refused, and never counted."""

    model_config = ConfigDict(
        title="voxbench listening scores, version 0: one record per line (JSON Lines), append-only",
        json_schema_extra={
            **_document("scores"),
            "if": {"required": ["refused"]},
            "then": {"properties": {"score": {"type": ["integer", "string"], "maxLength": 32}}},
            "else": {
                "required": list(_ANSWER),
                "properties": {
                    "listener": {"pattern": LISTENER_PATTERN},
                    "score": {"type": "integer", "minimum": 1, "maximum": 5},
                },
            },
        },
    )

    schema_: Literal["voxbench/scores/v0"] = Field(alias="schema")
    at: str = Field(description="when the answer was received (UTC, ISO 8601)")
    session: Annotated[str, Field(max_length=64)] | SkipJsonSchema[None] = Field(
        None, description="the blind session's id (scoring/session.json)"
    )
    listener: Annotated[str, Field(max_length=64)] | SkipJsonSchema[None] = Field(
        None, description="a name registered in scoring/listeners.json"
    )
    simulated: bool | SkipJsonSchema[None] = Field(
        None, description="true for simulated listeners (demos, tests); never counted by the rule"
    )
    pair: Annotated[str, Field(max_length=64)] | SkipJsonSchema[None] = Field(None, description="the pair's opaque id")
    clip: Annotated[str, Field(max_length=64)] | SkipJsonSchema[None] = Field(None, description="the clip's opaque id")
    score: int | str | SkipJsonSchema[None] = None
    refused: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="why this answer was refused (it never counts)"
    )
    utterance: int | SkipJsonSchema[None] = Field(None, description=_NOT_BLIND)
    condition: str | SkipJsonSchema[None] = Field(None, description=_NOT_BLIND)
    side: str | SkipJsonSchema[None] = Field(None, description=_NOT_BLIND)

    @model_validator(mode="after")
    def _answer_or_refusal(self) -> ScoreRecord:
        """The schema's ``if``/``then``/``else``: a refused record keeps what was given (a score
        trimmed to 32 characters); any other is a whole answer with an integer score of 1 to 5."""
        if self.refused is not None:
            if isinstance(self.score, str) and len(self.score) > 32:
                raise ValueError("score: a refused record keeps at most 32 characters of what was given")
            return self
        missing = [name for name in _ANSWER if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{missing[0]}: an answer that is not refused needs {', '.join(_ANSWER)}")
        if not isinstance(self.score, int) or isinstance(self.score, bool) or not 1 <= self.score <= 5:
            raise ValueError(f"score: {self.score!r} is not an integer from 1 to 5")
        if not re.match(LISTENER_PATTERN, self.listener or ""):
            raise ValueError(f"listener: {self.listener!r} does not match {LISTENER_PATTERN!r}")
        return self


# -- corrections -------------------------------------------------------------------------------


class Correction(Closed):
    """A later correction to a run's conclusions: what it retracts, why, and the evidence. Nothing
    in the other files is rewritten."""

    model_config = ConfigDict(
        title="voxbench corrections, version 0: one entry per line (JSON Lines), append-only",
        json_schema_extra=_document("corrections"),
    )

    schema_: Literal["voxbench/corrections/v0"] = Field(alias="schema")
    at: str
    by: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]
    evidence: Annotated[list[str], Field(min_length=1)]
    retracts: str | None = Field(None, description="the verdict this entry withdraws")
    verdict: str | None = Field(None, description="the verdict that stands after the correction")
