"""2C and 2D: engines without a stream (total latency only): a model loaded into this process,
or a command-line synthesizer run per utterance."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_py.audio import Pcm, read_wav_file
from bench_py.engines import inprocess, standin
from bench_py.engines.http import Condition
from bench_py.engines.paths.common import Context, PathError
from bench_py.engines.paths.process_path import fill_placeholders
from bench_py.processes import RUN_ID_VARIABLE


# -- 2C and 2D: engines without a stream -----------------------------------------------------------
@dataclass
class LocalTarget:
    """A synthesis called in this process (2C) or as a command (2D): total latency only."""

    synthesize_voice: Callable[[str, str | None], Pcm]
    preset_voice: str | None
    substitute_voice: str | None = None
    streaming: bool = field(default=False, init=False)

    def synthesize(self, text: str, condition: Condition) -> Pcm:
        voice = self.substitute_voice if condition == "cloned" and self.substitute_voice else self.preset_voice
        return self.synthesize_voice(text, voice)


class InProcessPath:
    name, kind, streaming_capable = "2C", "in_process", False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.engine: inprocess.InProcessEngine | None = None
        self.loads = 0  # how many times the model was loaded (the run records it)

    def _load(self) -> inprocess.InProcessEngine:
        if self.engine is None:
            cfg, candidate = self.ctx.candidate.in_process, self.ctx.candidate
            self.loads += 1
            try:
                self.engine = inprocess.load(cfg.loader, cfg.model_path, candidate.model, candidate.hf_cache_dir)
            except inprocess.LoadError as error:
                raise PathError(error.status, str(error)) from None
        return self.engine

    def start(self) -> dict[str, Any]:
        reason = standin.path_reason("2C", self.ctx.candidate)
        if reason and not self.ctx.allow_standins:
            raise PathError("blocked", f"{reason}; {standin.BLOCKED}")
        started = time.monotonic()
        engine = self._load()
        cfg = self.ctx.candidate.in_process
        return {
            "engine": {"loader": cfg.loader, "model_path": cfg.model_path, "versions": engine.versions},
            "standin": reason,
            "loaded_after_s": round(time.monotonic() - started, 3),
            "pid": os.getpid(),
            "preset_voice": {"name": cfg.voice, "source": "candidate.in_process.voice"},
        }

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> LocalTarget:
        # The model STARTING loaded (the run's phases share one process); loaded here if not yet.
        return LocalTarget(self._load().synthesize, self.ctx.candidate.in_process.voice, substitute_voice)

    def alive(self) -> bool:
        return self.engine is not None

    def restart(self) -> None:
        self.engine = None
        self._load()

    def log_lines(self, tail: int = 40) -> list[str]:
        return []

    def pids(self) -> list[int]:
        return [os.getpid()]

    def stop(self) -> dict[str, Any]:
        self.engine = None  # the run's process lets the model go (teardown collects it before the co-tenant returns)
        return {"verified": True, "released": "the model dropped by the run's process"}


class BatchPath:
    name, kind, streaming_capable = "2D", "batch", False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.candidate.batch

    def start(self) -> dict[str, Any]:
        if not self.cfg.command:
            raise PathError(
                "blocked", "the candidate has no one-utterance command (candidate.batch.command is not set)"
            )
        reason = standin.path_reason("2D", self.ctx.candidate)
        if reason and not self.ctx.allow_standins:
            raise PathError("blocked", f"{reason}; {standin.BLOCKED}")
        binary = shutil.which(self.cfg.command[0])
        if binary is None:
            raise PathError("blocked", f"{self.cfg.command[0]} is not installed on this host (candidate.batch.command)")
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False, stdin=subprocess.DEVNULL
        )
        first = (version.stdout or version.stderr).strip().splitlines()
        return {
            "binary": binary,
            "standin": reason,
            "version": first[0] if first else None,
            "launch_command": self.cfg.command,
            "preset_voice": {"name": self.cfg.voice, "source": "candidate.batch.voice"},
        }

    def synthesize(self, text: str, voice: str | None) -> Pcm:
        with tempfile.TemporaryDirectory(prefix="voxbench-2d-") as folder:
            text_file, wav = Path(folder) / "input.txt", Path(folder) / "output.wav"
            text_file.write_text(text, encoding="utf-8")  # a file, never argv: no text is read as an option
            argv = fill_placeholders(
                self.cfg.command or [], {"text_file": str(text_file), "wav": str(wav), "voice": voice or ""}
            )
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder}
            env["HF_TOKEN_PATH"] = str(self.ctx.token_file.expanduser().resolve())
            env[RUN_ID_VARIABLE] = self.ctx.run_id  # a child it leaves behind is found by it at teardown
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.cfg.timeout_s, env=env, stdin=subprocess.DEVNULL
            )
            if result.returncode != 0 or not wav.is_file():
                raise RuntimeError(f"{argv[0]} exited {result.returncode}: {result.stderr.strip()[-300:]}")
            return read_wav_file(str(wav))

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> LocalTarget:
        return LocalTarget(self.synthesize, self.cfg.voice, substitute_voice)

    def alive(self) -> bool:
        return True

    def restart(self) -> None:
        return None

    def log_lines(self, tail: int = 40) -> list[str]:
        return []

    def pids(self) -> list[int]:
        return []

    def stop(self) -> dict[str, Any]:
        return {"verified": True, "released": "each synthesis is a command that has exited"}
