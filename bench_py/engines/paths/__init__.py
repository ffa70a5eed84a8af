"""The four install paths behind one protocol, tried in the configured order.

- 2A ``container``: the engine image under Docker (GPU by device request when the NVIDIA runtime
  is there), token as a read-only file mount.
- 2B ``process``: the engine as a host process supervised by tmux, token as ``HF_TOKEN_PATH``.
- 2C ``in_process``: a model loaded into the benchmark's own process (no stream: total latency).
- 2D ``batch``: a command-line synthesizer run per utterance (no stream: total latency).

Every path ends with a status and evidence. ``blocked`` and ``failed`` mean this host stopped
it (its environment, or the engine not coming up healthy here); ``unsupported`` means the
software itself says it cannot run the model; ``disallowed_by_vendor`` means the model's
license is not one the configuration allows; ``skipped`` means an earlier path already passed.
"""

from __future__ import annotations

from collections.abc import Callable

from bench_py.engines.paths.common import (
    NOT_A_VOICE,
    PATH_KINDS,
    PORT_TAKEN,
    STATUSES,
    STREAMING,
    UNSUPPORTED_MODEL,
    Context,
    InstallPath,
    PathError,
    after_ready,
    classify_log,
    engine_file_command,
    host_platform,
    http_target,
    image_platforms,
    interesting,
    license_verdict,
    list_voices,
    preset_voice,
    read_license,
    reported_version,
    settles,
    survives,
    wait_http_ready,
)
from bench_py.engines.paths.container_path import ContainerPath
from bench_py.engines.paths.local_paths import BatchPath, InProcessPath, LocalTarget
from bench_py.engines.paths.process_path import ProcessPath, fill_placeholders, stop_process_group, stop_session, tmux

__all__ = [
    "NOT_A_VOICE",
    "PATH_KINDS",
    "PORT_TAKEN",
    "STATUSES",
    "STREAMING",
    "UNSUPPORTED_MODEL",
    "BatchPath",
    "ContainerPath",
    "Context",
    "InProcessPath",
    "InstallPath",
    "LocalTarget",
    "PathError",
    "ProcessPath",
    "after_ready",
    "classify_log",
    "engine_file_command",
    "fill_placeholders",
    "host_platform",
    "http_target",
    "image_platforms",
    "interesting",
    "license_verdict",
    "list_voices",
    "make",
    "preset_voice",
    "read_license",
    "reported_version",
    "settles",
    "stop_process_group",
    "stop_session",
    "survives",
    "tmux",
    "wait_http_ready",
]


def make(name: str, ctx: Context) -> InstallPath:
    classes: dict[str, Callable[[Context], InstallPath]] = {
        "2A": ContainerPath,
        "2B": ProcessPath,
        "2C": InProcessPath,
        "2D": BatchPath,
    }
    return classes[name](ctx)
