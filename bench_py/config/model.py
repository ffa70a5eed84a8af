"""The one validated configuration: shipped defaults + overrides → a typed model.

Defaults live in ``defaults.yml`` beside this file. Overrides (inventory ``voxbench_config``,
extra vars) are deep-merged over them, then the selected profile's keys over that. Validation
errors name the key path, e.g. ``bench.repetitions: Input should be greater than 0``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

GemmaMode = Literal["parallel", "pause-gemma"]
GEMMA_MODES: tuple[str, ...] = ("parallel", "pause-gemma")


class ConfigError(ValueError):
    """The configuration is invalid; each line names a key and what is wrong with it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


InstallPathName = Literal["2A", "2B", "2C", "2D"]


class Launch(_Strict):
    """Version-aware launch for 2A (and 2B with ``process.version_command``)."""

    version_command: list[str] | None = None  # run in the image: prints the engine's version
    flags_by_version: dict[str, list[str]] = {}  # version prefix -> flags; {stage_config} {stage_overrides}
    stage_configs: dict[str, str] = {}  # version prefix -> the engine's own stage config, in its package
    memory_budget_gb: float | None = Field(default=None, gt=0)  # null: derived from MemAvailable
    memory_margin_gb: float = Field(default=8.0, ge=0)  # left free beside the budget (the co-tenant, the host)
    memory_budget_max_gb: float = Field(default=24.0, gt=0)  # a derived budget never takes more than this
    weights_gb: float = Field(default=0.0, ge=0)  # the model's weights: a budget below them is refused
    total_memory_gb: float | None = Field(default=None, gt=0)  # null: NVML, else MemTotal
    stage_config_template: str | None = None  # a local copy of the engine's stage config, instead of its own
    stage_config_mount: str = "/run/voxbench/stage-config.yaml"


class ProcessPath(_Strict):
    """2B: the engine as a supervised host process (a tmux session)."""

    command: list[str] = Field(min_length=1)  # {venv} {python} {port} {model} are filled in
    version_command: list[str] | None = None  # run on the host: prints the engine's version
    venv: str | None = None  # the engine's own virtual environment on the host ({venv})
    stop_grace_s: float = Field(default=10.0, gt=0)


class InProcessPath(_Strict):
    """2C: a model loaded into the benchmark's own process."""

    loader: Literal["espeak-ng", "transformers"]
    model_path: str | None = None  # transformers: a local model directory (from_pretrained)
    voice: str | None = None  # the preset voice (espeak-ng: a voice name)


class BatchPath(_Strict):
    """2D: a command-line synthesizer run once per utterance (null: the engine has none)."""

    command: list[str] | None = Field(default=None, min_length=1)  # {text_file} {wav} {voice} are filled in
    voice: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)


class License(_Strict):
    model_card: str | None = None  # README.md with `license:` front matter, or a config.json
    allowed: list[str] | None = None  # refuse every path unless the model's license is listed


class Candidate(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    model: str
    image: str
    command: list[str]
    container_port: int = Field(gt=0, lt=65536)
    port: int = Field(gt=0, lt=65536)
    preset_voice: str | None = None  # null: the first voice the engine's /v1/audio/voices lists
    sample_rate: int = Field(default=24000, gt=0)  # raw PCM carries no rate: the engine's documented one
    ready_timeout_s: float = Field(gt=0)
    memory_required_gb: float = Field(ge=0)
    hf_token_mount: str
    cpuset_cpus: str | None
    network_mode: str | None
    ipc_mode: str | None = None  # 2A: "host", as vLLM's container docs ask (shared memory between stages)
    shm_size: str | None = None  # 2A: or a larger /dev/shm instead, e.g. "16g"
    cloning_probe: bool = True
    cloning_probe_timeout_s: float = Field(default=30.0, gt=0)
    cloning_probe_settle_s: float = Field(default=8.0, ge=0)  # a failing engine can take seconds to die
    install_paths: list[InstallPathName] = Field(min_length=1)
    pull: bool = False
    process: ProcessPath
    in_process: InProcessPath
    batch: BatchPath
    license: License = License()
    launch: Launch = Launch()
    token_mode: Literal["file", "env-file"] = "file"
    hf_cache_dir: str | None = None  # 2A: the host's Hugging Face cache, mounted read-write
    hf_cache_mount: str = "/root/.cache/huggingface"

    @field_validator("install_paths")
    @classmethod
    def _distinct_paths(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each install path may be listed once")
        return value


class ReferenceAudio(_Strict):
    """How the incumbent's API is given the reference clip."""

    send_as: Literal["path", "base64"]  # a file on the incumbent's host, or the clip's bytes
    path: str = "voice-references/{name}.wav"  # send_as path: {name} is reference.name


class Incumbent(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    api: Literal["chatterbox", "openai"]
    url: str
    token_file: str | None
    token_header: str
    model: str
    preset_voice: str | None = None  # openai api: the preset condition's voice (chatterbox: its built-in voice)
    host: str
    reference_audio: ReferenceAudio
    exaggeration: float = Field(ge=0, le=2)  # chatterbox: production's knobs, sent with every request
    cfg_weight: float = Field(ge=0, le=1)
    temperature: float = Field(gt=0, le=5)


class Gate(_Strict):
    enabled: bool
    interval_s: float = Field(gt=0)
    window: int = Field(gt=0)
    max_ratio: float = Field(gt=1.0)


class CotenantControl(_Strict):
    kind: Literal["container", "systemd", "none"]
    name: str | None


class Cotenant(_Strict):
    name: str
    url: str
    model: str | None  # null: the one model its /v1/models lists
    prompt: str
    max_tokens: int = Field(gt=0)
    warmup: int = Field(ge=0)
    probes: int = Field(gt=0)
    timeout_s: float = Field(gt=0)
    postflight_max_ratio: float = Field(gt=1.0)
    postflight_window_s: float = Field(gt=0)
    gate: Gate
    control: CotenantControl
    resume_timeout_s: float = Field(gt=0)


class Timeouts(_Strict):
    connect: float = Field(gt=0)
    read: float = Field(gt=0)
    write: float = Field(gt=0)
    pool: float = Field(gt=0)


class Load(_Strict):
    enabled: bool
    concurrency_limit: int = Field(gt=0, le=256)
    requests_per_level: int = Field(gt=0)
    max_error_rate: float = Field(ge=0, le=1)
    poisson_rate_per_s: float = Field(ge=0)
    poisson_requests: int = Field(gt=0)
    seed: int


class Bench(_Strict):
    utterances: list[str]
    conditions: list[Literal["cloned", "preset"]] = Field(min_length=1)
    repetitions: int = Field(gt=0)
    warmup: int = Field(ge=0)
    max_timeout_fraction: float = Field(gt=0, le=1)
    timeouts: Timeouts
    save_wavs: bool
    skip_baseline: bool = False
    client_cpus: list[int] | None
    audible_threshold_dbfs: float = Field(lt=0)
    memory_interval_s: float = Field(gt=0)
    load: Load

    @field_validator("utterances", mode="before")
    @classmethod
    def _default_utterances(cls, value: Any) -> Any:
        if value == "default":
            from bench_py.config import default_utterances

            return default_utterances()
        return value

    @field_validator("utterances")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value or any(not u.strip() for u in value):
            raise ValueError("needs at least one utterance, none of them blank")
        return value


class Reference(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dir: str


class Rule(_Strict):
    voice_condition: Literal["cloned", "preset"]
    min_mean_margin: float
    ttfa_metric: Literal["ttfa_ms", "ttfb_ms", "ttfa_audible_ms"]
    ttfa_concurrency: int = Field(gt=0)
    ttfa_p50_max_ms: float = Field(gt=0)
    min_scores: int = Field(gt=0)
    max_timeout_fraction: float = Field(gt=0, le=1)

    def canonical_text(self, candidate: str, incumbent: str) -> str:
        """The rule in words and numbers, as sealed: any change to either changes the hash."""
        return (
            f"swap_candidate if, in the {self.voice_condition} condition, the mean listening score of "
            f"{candidate} >= that of {incumbent} + {self.min_mean_margin:g} AND {candidate}'s "
            f"{self.ttfa_metric} p50 at concurrency {self.ttfa_concurrency} <= {self.ttfa_p50_max_ms:g} ms; "
            f"at least {self.min_scores} non-simulated scores per side; inconclusive when the run aborted or "
            f">= {self.max_timeout_fraction:.0%} of timed requests timed out; otherwise keep_{incumbent}."
        )

    def seal(self, candidate: str, incumbent: str) -> dict[str, Any]:
        text = self.canonical_text(candidate, incumbent)
        thresholds = self.model_dump()
        payload = json.dumps({"text": text, "thresholds": thresholds}, sort_keys=True, separators=(",", ":"))
        return {"text": text, "thresholds": thresholds, "sha256": hashlib.sha256(payload.encode()).hexdigest()}


class Preflight(_Strict):
    min_free_disk_gb: float = Field(ge=0)
    disk_reserve_mb: float = Field(ge=0)
    docker_url: str | None


class Teardown(_Strict):
    grace_s: float = Field(ge=0)


class Paths(_Strict):
    state_dir: str
    token_file: str


class Prescreen(_Strict):
    url: str
    model: str
    key_file: str
    utterances: int = Field(gt=0, le=10)
    similarity_threshold: float = Field(ge=-1, le=1)
    usd_per_1k_characters: float = Field(ge=0)
    timeout_s: float = Field(gt=0)


class Config(_Strict):
    profile: str
    gemma_mode: GemmaMode
    allow_standin_engines: bool = False  # run voxbench's stand-ins as if they were the engines (demo, rehearsal)
    candidate: Candidate
    incumbent: Incumbent
    cotenant: Cotenant
    bench: Bench
    reference: Reference
    rule: Rule
    preflight: Preflight
    teardown: Teardown
    paths: Paths
    prescreen: Prescreen


def default_config() -> dict[str, Any]:
    text = resources.files("bench_py.config").joinpath("defaults.yml").read_text(encoding="utf-8")
    return cast(dict[str, Any], yaml.safe_load(text))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def resolve(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then overrides, then the chosen profile's keys: the plain merged mapping."""
    merged = deep_merge(default_config(), overrides or {})
    profiles = merged.pop("profiles", {}) or {}
    profile = merged.get("profile", "full")
    if not isinstance(profile, str):
        raise ConfigError(f"profile: must be a name (full or one of {sorted(profiles)}), not {profile!r}")
    if profile != "full":
        if profile not in profiles:
            raise ConfigError(f"profile: unknown profile {profile!r}; choose full or one of {sorted(profiles)}")
        merged = deep_merge(merged, profiles[profile])
        # Explicit overrides still win over the profile.
        merged = deep_merge(merged, {k: v for k, v in (overrides or {}).items() if k != "profiles"})
    return merged


#: Keys that once existed, and what replaced them (a copied inventory gets a sentence, not "unknown key").
REMOVED_KEYS = {
    ("candidate", "standin"): "removed: voxbench recognises its stand-ins itself; set allow_standin_engines: true "
    "to run them (inventory/local does)",
    ("incumbent", "standin"): "removed: results name a stand-in incumbent from what it answers",
}


def _removed(merged: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(path)}: {why}"
        for path, why in REMOVED_KEYS.items()
        if isinstance(merged.get(path[0]), dict) and path[1] in merged[path[0]]
    ]


def load(overrides: dict[str, Any] | None = None) -> Config:
    """Validate defaults + overrides; raises :class:`ConfigError` naming every bad key."""
    merged = resolve(overrides)
    if _removed(merged):
        raise ConfigError("; ".join(_removed(merged)))
    if merged.get("gemma_mode") is None:
        raise ConfigError(f"gemma_mode: required; choose one of {', '.join(GEMMA_MODES)}")
    try:
        return Config.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def load_file(path: str) -> Config:
    """A configuration already resolved and written by the launcher (JSON)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
