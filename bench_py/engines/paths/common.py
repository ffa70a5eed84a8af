"""What every install path shares: statuses and errors, the context, licenses, readiness, what a
ready engine says it is (stand-in, version, voices), the OpenAI speech target."""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench_py.engines import launch, ready, standin
from bench_py.engines.http import OpenAISpeechTarget

STATUSES = ("ok", "blocked", "unsupported", "disallowed_by_vendor", "failed", "skipped")


PATH_KINDS = {"2A": "container", "2B": "process", "2C": "in_process", "2D": "batch"}


STREAMING = {"2A": True, "2B": True, "2C": False, "2D": False}


#: What engines print when they have no implementation for a model: the software's own word.
UNSUPPORTED_MODEL = re.compile(
    r"architectures? .{0,200}\b(?:is|are) not supported|unsupported model (?:architecture|type)"
    r"|does not (?:yet )?support (?:this|the) model",
    re.IGNORECASE,
)


#: What engines print when the port they were given is taken: this host, not the engine.
PORT_TAKEN = re.compile(r"address already in use|errno 98", re.IGNORECASE)


class PathError(RuntimeError):
    """The path did not come up: ``status`` (one of :data:`STATUSES`), the reason and evidence."""

    def __init__(self, status: str, reason: str, evidence: list[str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.evidence = status, reason, evidence or []


def classify_log(lines: list[str], default: str = "failed") -> str:
    """``unsupported`` when the engine said it cannot run the model; ``blocked`` when its port was taken."""
    text = "\n".join(lines)
    if UNSUPPORTED_MODEL.search(text):
        return "unsupported"
    if PORT_TAKEN.search(text):
        return "blocked"
    return default


def interesting(lines: list[str], keep: int = 8) -> list[str]:
    """The log lines worth quoting as evidence: errors first, else the tail."""
    marked = [line for line in lines if re.search(r"error|exception|traceback|not supported|fatal", line, re.I)]
    return (marked or lines)[-keep:]


@dataclass(frozen=True)
class Context:
    """What every path needs: the run, the candidate's configuration, the token file's path."""

    run_id: str
    candidate: Any  # config.Candidate
    token_file: Path
    run_dir: Path
    docker_url: str | None = None
    should_stop: Callable[[], None] = lambda: None
    record_change: Callable[[dict[str, Any]], object] = lambda change: None  # what it returns is ignored
    allow_standins: bool = False
    stop_grace_s: float = 10.0  # teardown.grace_s: docker stop's grace before it kills


class InstallPath(Protocol):
    name: str
    kind: str
    streaming_capable: bool

    def start(self) -> dict[str, Any]:
        """Bring the engine up and wait until it answers; facts to record, or :class:`PathError`."""

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> Any:
        """What the timed loops call: a streaming HTTP target or a :class:`LocalTarget`."""

    def alive(self) -> bool: ...

    def restart(self) -> None: ...

    def log_lines(self, tail: int = 40) -> list[str]: ...

    def pids(self) -> list[int]:
        """The engine's processes as this host sees them (2C: this one)."""

    def stop(self) -> dict[str, Any]:
        """Deterministic teardown; ``verified`` says the engine is gone."""


# -- the license gate ------------------------------------------------------------------------------
def read_license(model_card: str | Path) -> str | None:
    """The ``license`` of a Hub model card's YAML front matter, or of a config.json."""
    import json

    import yaml

    path = Path(model_card).expanduser()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        value = json.loads(text).get("license")
        return str(value) if value else None
    match = re.match(r"---\s*\n(.*?)\n---", text, re.S)
    if not match:
        return None
    front = yaml.safe_load(match.group(1)) or {}
    value = front.get("license") if isinstance(front, dict) else None
    return str(value) if value else None


def license_verdict(candidate: Any) -> dict[str, Any] | None:
    """None when no license is required; else what was read and whether it is allowed."""
    rule = candidate.license
    if rule.allowed is None:
        return None
    card = rule.model_card or (
        str(Path(candidate.in_process.model_path) / "README.md") if candidate.in_process.model_path else None
    )
    if not card:
        return {"allowed": False, "license": None, "reason": "candidate.license.model_card is not set"}
    try:
        found = read_license(card)
    except (OSError, ValueError) as error:
        return {"allowed": False, "license": None, "source": card, "reason": f"cannot read {card}: {error}"}
    allowed = found is not None and found.lower() in {item.lower() for item in rule.allowed}
    reason = None if allowed else f"license {found or 'unknown'} is not in candidate.license.allowed {rule.allowed}"
    return {"allowed": allowed, "license": found, "source": card, "reason": reason}


# -- waiting for an HTTP engine --------------------------------------------------------------------
def wait_http_ready(
    url: str, timeout_s: float, gone: Callable[[], str | None], should_stop: Callable[[], None]
) -> float:
    """:func:`ready.wait_http_ready`, failing the path with the reason."""
    try:
        return ready.wait_http_ready(url, timeout_s, gone, should_stop)
    except ready.NotReady as error:
        raise PathError("failed", str(error)) from None


# -- 2A: container ---------------------------------------------------------------------------------
def host_platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"linux/{arch}"


def image_platforms(client: Any, image: str) -> tuple[list[str], str]:
    """The platforms an image offers, and where that was read: the local image, else its registry."""
    import docker.errors

    try:
        attrs = client.images.get(image).attrs
        variant = f"/{attrs['Variant']}" if attrs.get("Variant") else ""
        return [f"{attrs.get('Os', 'linux')}/{attrs.get('Architecture')}{variant}"], "local image"
    except docker.errors.ImageNotFound:
        pass
    data = client.images.get_registry_data(image)  # the registry's manifest (list): no layer is pulled
    platforms = [
        f"{p['os']}/{p['architecture']}" + (f"/{p['variant']}" if p.get("variant") else "")
        for p in data.attrs.get("Platforms", [])
    ]
    return platforms, "registry manifest"


def survives(path: InstallPath, seconds: float) -> bool:
    """Whether an engine stays up for ``seconds``: a failing engine may answer its error first and
    die later (vLLM's watchdog ends the server a few seconds after the engine core died)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not path.alive():
            return False
        time.sleep(0.5)
    return path.alive()


def settles(running: Callable[[], bool], port: int, within_s: float = 10.0) -> bool:
    """After a failed request: is the engine still up and answering? A dying process can look
    alive for a moment, so wait until it either answers /health or is gone."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not running():
            return False
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


#: Prints a file of the engine's own package, found without importing it (importing vLLM-Omni
#: imports vLLM and torch): ``python -c SCRIPT vllm_omni/deploy/voxtral_tts.yaml``.
_ENGINE_FILE = (
    "import importlib.util, pathlib, sys; spec = importlib.util.find_spec(sys.argv[1].split('/')[0]); "
    "root = pathlib.Path(list(spec.submodule_search_locations)[0]).parent; "
    "sys.stdout.write(root.joinpath(sys.argv[1]).read_text())"
)


def engine_file_command(python: str, relative: str) -> list[str]:
    return [python, "-c", _ENGINE_FILE, relative]


def after_ready(ctx: Context, planned: dict[str, Any] | None, readback: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What a ready HTTP engine says it is: a stand-in (refused unless allowed), the vLLM it runs
    on (``GET /version``), and — with a launch plan — what it was given, checked against the plan."""
    cfg = ctx.candidate
    facts: dict[str, Any] = {}
    try:
        health = httpx.get(f"http://127.0.0.1:{cfg.port}/health", timeout=5.0)
        answered = standin.answered_as(health.headers)
    except httpx.HTTPError:
        answered = None
    if answered:
        facts["standin"] = f"the engine answers {standin.HEADER}: {answered}"
        if not ctx.allow_standins:
            raise PathError("blocked", f"{facts['standin']}; {standin.BLOCKED}")
    reported = reported_version(cfg.port)
    facts["vllm_version"] = reported.get("version")
    if planned:
        planned["readback"] = readback()
        planned["pairing"] = launch.pairing_note(planned["engine_version"], facts["vllm_version"])
        mismatch = launch.check_loaded(planned, planned["readback"])
        if mismatch:
            raise PathError("failed", mismatch)
    facts["voices"], facts["preset_voice"] = preset_voice(cfg.port, cfg.preset_voice)
    return facts


def reported_version(port: int) -> dict[str, Any]:
    """What the running server says it is: vLLM's ``GET /version`` (vLLM's version, never vLLM-Omni's)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5.0)
        return response.json() if response.status_code == 200 else {"error": f"HTTP {response.status_code}"}
    except (httpx.HTTPError, ValueError) as error:
        return {"error": f"{type(error).__name__}: {error}"}


#: What an engine lists that is not a voice to speak with (vLLM-Omni 0.30 lists "default" and refuses it).
NOT_A_VOICE = frozenset({"default"})


def list_voices(port: int) -> list[str]:
    """The engine's preset voices (``GET /v1/audio/voices``), in its order."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/audio/voices", timeout=30.0)
        listed = response.json().get("voices", []) if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError, AttributeError) as error:
        raise PathError("failed", f"the engine did not list its voices: {type(error).__name__}: {error}") from None
    return [str(v) for v in listed if isinstance(v, str) and v.lower() not in NOT_A_VOICE]


def preset_voice(port: int, configured: str | None) -> tuple[list[str], dict[str, Any]]:
    """The `preset` condition's voice, from what the engine lists: the configured name when it
    is listed (else the path fails, naming the list), or the first listed."""
    voices = list_voices(port)
    if not voices:
        raise PathError("failed", "the engine lists no voices at GET /v1/audio/voices: nothing to speak the preset in")
    if configured is None:
        return voices, {"name": voices[0], "source": "the first voice GET /v1/audio/voices lists"}
    if configured.lower() not in {v.lower() for v in voices}:
        raise PathError(
            "failed", f"candidate.preset_voice {configured!r} is not one of the engine's voices: {', '.join(voices)}"
        )
    return voices, {"name": configured, "source": "candidate.preset_voice, listed by the engine"}


def http_target(ctx: Context, substitute_voice: str | None, preset: str | None) -> OpenAISpeechTarget:
    cfg = ctx.candidate
    return OpenAISpeechTarget(
        f"http://127.0.0.1:{cfg.port}/v1/audio/speech",
        cfg.model,
        preset or cfg.preset_voice or "",
        str(ctx.run_dir / "reference.wav"),
        substitute_voice,
        cfg.sample_rate,
    )
