"""vLLM-Omni's own code, as the rules the candidate stand-in follows and the client is held to.

vLLM-Omni is published on PyPI as pure-Python wheels. Its speech request model
(``vllm_omni/entrypoints/openai/protocol/audio.py``) imports only pydantic and numpy, so it can
be loaded straight from a downloaded wheel (or the wheel unpacked into a stand-in image) and
validate a request exactly as the real server does. A few texts the real server answers with
(the Voxtral cloning refusal, the engine's encoder error, the invalid-speaker message) are read
from the same source, so the stand-in can never drift from the release it plays.

Only the releases pinned in :data:`RELEASES` are used, each checked against its sha256.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: Where the request model lives inside a vLLM-Omni wheel (both releases).
REQUEST_MODULE = "vllm_omni/entrypoints/openai/protocol/audio.py"


@dataclass(frozen=True)
class Release:
    """One vLLM-Omni release voxbench knows, and what differs between releases for a client."""

    version: str
    sha256: str
    #: The engine's own stage config for Voxtral inside the package (two stages in both).
    stage_config: str
    #: The launch flag that takes a (patched) stage config file, and the one for per-stage overrides.
    stage_config_flag: str
    stage_overrides_flag: str | None
    #: ``stream: true`` without ``stream_format`` streams SSE (0.30) or raw audio (0.18).
    stream_defaults_to_sse: bool
    #: ``GET /v1/audio/voices`` also lists ``default``, which the speech endpoint refuses (0.30).
    voices_list_default: bool
    #: ``GET /health``: 0.18 answers through vLLM's own handler (empty body), 0.30 through its own.
    health_json: bool
    #: The status an engine failure reaches the client with (0.18: 400 "Speech generation failed").
    engine_failure_status: int

    @property
    def wheel_name(self) -> str:
        return f"vllm_omni-{self.version}-py3-none-any.whl"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


RELEASES: dict[str, Release] = {
    # The release the manual run used on a DGX Spark.
    "0.18.0": Release(
        "0.18.0",
        "a70e4ebf7df0a02ff2a76e04957349471c9ba831b3546ecba2b484d6a53c7ea3",
        "vllm_omni/model_executor/stage_configs/voxtral_tts.yaml",
        "--stage-configs-path",
        None,
        stream_defaults_to_sse=False,
        voices_list_default=False,
        health_json=False,
        engine_failure_status=400,
    ),
    # The current release.
    "0.30.0": Release(
        "0.30.0",
        "141cb0c7b9c07970e5c92a99aab9696e81682dbfa3d2bfcde359c3c1533385f4",
        "vllm_omni/deploy/voxtral_tts.yaml",
        "--deploy-config",
        "--stage-overrides",
        stream_defaults_to_sse=True,
        voices_list_default=True,
        health_json=True,
        engine_failure_status=500,
    ),
}


class UpstreamError(RuntimeError):
    """An upstream wheel could not be fetched, verified or read; the message says what to do."""


def release(version: str) -> Release:
    try:
        return RELEASES[version]
    except KeyError:
        raise UpstreamError(
            f"vLLM-Omni {version} is not a release voxbench knows; known: {', '.join(RELEASES)}"
        ) from None


def cache_dir() -> Path:
    """Downloaded wheels, kept across runs (like the stand-in images): ``$VOXBENCH_CACHE/upstream``."""
    root = os.environ.get("VOXBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "voxbench"
    )
    return Path(root) / "upstream"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_wheel(version: str, directory: Path | None = None) -> Path:
    """The release's wheel from PyPI (``pip download``), cached and checked against its sha256."""
    rel = release(version)
    directory = directory or cache_dir()
    wheel = directory / rel.wheel_name
    if wheel.is_file() and _sha256(wheel) == rel.sha256:
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="voxbench-upstream-", dir=directory) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
        result = subprocess.run(
            [*command, "--dest", scratch, f"vllm-omni=={version}"], capture_output=True, text=True, check=False
        )
        fetched = Path(scratch) / rel.wheel_name
        if result.returncode != 0 or not fetched.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise UpstreamError(f"could not download vllm-omni=={version} from the package index: {' | '.join(tail)}")
        found = _sha256(fetched)
        if found != rel.sha256:
            raise UpstreamError(
                f"the downloaded {rel.wheel_name} has sha256 {found}, not the pinned {rel.sha256}: refusing it"
            )
        shutil.move(str(fetched), wheel)
    return wheel


class Source:
    """The files of one release: a wheel (zip) or the package unpacked into a directory."""

    def __init__(self, location: Path, version: str | None = None) -> None:
        self.location = Path(location)
        self.version = version or self._read_version()
        self.release = release(self.version)

    def read(self, member: str) -> str:
        if self.location.is_file():
            with zipfile.ZipFile(self.location) as archive:
                return archive.read(member).decode("utf-8")
        return (self.location / member).read_text(encoding="utf-8")

    def _read_version(self) -> str:
        if self.location.is_file():
            # vllm_omni-0.30.0-py3-none-any.whl
            return self.location.name.split("-")[1]
        (dist_info,) = self.location.glob("vllm_omni-*.dist-info")
        return dist_info.name[len("vllm_omni-") : -len(".dist-info")]

    def where(self, member: str) -> str:
        return f"{self.location}!{member}" if self.location.is_file() else str(self.location / member)


def unpack(wheel: Path, destination: Path) -> Path:
    """The wheel's files (package and dist-info) under ``destination``: importable metadata and source,
    without installing anything that would run."""
    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(destination)
    return destination


@cache
def _request_module(location: str, version: str) -> types.ModuleType:
    source = Source(Path(location), version)
    text = source.read(REQUEST_MODULE)
    name = f"voxbench_upstream.vllm_omni_{version.replace('.', '_')}.audio"
    module = types.ModuleType(name)
    module.__file__ = source.where(REQUEST_MODULE)
    sys.modules[name] = module  # pydantic resolves the models' annotations through the module
    exec(compile(text, module.__file__, "exec"), module.__dict__)  # the pinned, sha256-checked upstream file
    return module


def speech_request_model(source: Source) -> Any:
    """The release's own ``OpenAICreateSpeechRequest`` (a pydantic model class)."""
    return _request_module(str(source.location), source.version).OpenAICreateSpeechRequest


def declared_keys(model: Any) -> set[str]:
    """Every key a body may carry that the model reads: field names and their aliases.

    The model ignores unknown keys, so validation alone says nothing about a misspelled one."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if isinstance(alias, str):
            keys.add(alias)
        elif choices:
            keys.update(c for c in choices if isinstance(c, str))
        if field.alias:
            keys.add(field.alias)
    return keys


def _string_constants(text: str) -> list[str]:
    """Every string literal of a module, adjacent literals joined as Python joins them."""
    return [
        node.value
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _find(texts: list[str], needle: str, where: str) -> str:
    for text in texts:
        if needle in text:
            return text
    raise UpstreamError(f"{where} no longer says {needle!r}: the stand-in's rules need a look at this release")


@dataclass(frozen=True)
class VoxtralTexts:
    """What the release's Voxtral code answers, read from its source."""

    #: 0.30: the adapter refuses ``ref_audio`` before generating (400); None where no such check exists.
    clone_refusal: str | None
    #: The engine's own error when ``ref_audio`` reaches it without encoder weights (0.18: it dies).
    encoder_error: str
    #: ``Invalid speaker '{voice}'. Supported: {names}``
    invalid_speaker: str
    #: A request naming neither a voice nor reference audio.
    missing_voice: str


def voxtral_texts(source: Source) -> VoxtralTexts:
    tokenizer_files = [
        "vllm_omni/model_executor/models/voxtral_tts/voxtral_tts_audio_tokenizer.py",
    ]
    encoder_error = _find(
        [t for member in tokenizer_files for t in _string_constants(source.read(member))],
        "requires encoder weights",
        tokenizer_files[0],
    )
    if source.release.stream_defaults_to_sse:  # 0.30: the adapter holds the rules
        member = "vllm_omni/entrypoints/openai/tts_adapters/voxtral.py"
        adapter = source.read(member)
        refusal: str | None = _find(_string_constants(adapter), "Voice cloning with 'ref_audio'", member)
    else:
        member = "vllm_omni/entrypoints/openai/serving_speech.py"
        adapter = source.read(member)
        refusal = None
    missing = _find(_string_constants(adapter), "(preset speaker)", member)
    _find(_string_constants(adapter), "Invalid speaker '", member)  # the template below is the release's
    return VoxtralTexts(refusal, encoder_error, "Invalid speaker '{voice}'. Supported: {names}", missing)


def stage_config_text(source: Source) -> str:
    """The engine's own Voxtral stage config (0.18) or deploy config (0.30), as shipped."""
    return source.read(source.release.stage_config)


def sse_event_keys(source: Source) -> dict[str, set[str]]:
    """The keys of every ``speech.audio.*`` event the release's server builds as a dict literal
    (0.30's SSE stream): what a client of the real server reads."""
    tree = ast.parse(source.read("vllm_omni/entrypoints/openai/serving_speech.py"))
    events: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        if "type" not in keys:
            continue
        kind = node.values[keys.index("type")]
        if isinstance(kind, ast.Constant) and str(kind.value).startswith("speech.audio."):
            events.setdefault(str(kind.value), set()).update(keys)
    return events


def standin_venv(version: str, root: Path | None = None, python: str | None = None) -> Path:
    """A directory shaped like vLLM-Omni's venv on a host, for install path 2B: ``bin/vllm-omni``
    (the stand-in's command line) and ``bin/python`` seeing the release unpacked in ``site/``,
    marked as voxbench's stand-in. The embedded default points ``candidate.process.venv`` here."""
    venv = (root or cache_dir().parent / "standin-venvs") / version
    site = venv / "site"
    if not (site / f"vllm_omni-{version}.dist-info").is_dir():
        shutil.rmtree(site, ignore_errors=True)
        unpack(ensure_wheel(version), site)
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    interpreter = python or sys.executable
    scripts = {
        "python": f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{interpreter}" "$@"\n',
        "vllm-omni": f'#!/bin/sh\nexec "{venv}/bin/python" -m bench_py.standins.vllm_omni_cli "$@"\n',
    }
    for name, text in scripts.items():
        script = venv / "bin" / name
        script.write_text(text)
        script.chmod(0o755)
    (venv / "voxbench-standin").write_text(f"voxbench's stand-in of vLLM-Omni {version}'s venv\n")
    return venv
