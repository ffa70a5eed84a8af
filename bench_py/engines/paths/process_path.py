"""2B: the engine as a host process supervised by tmux, token as ``HF_TOKEN_PATH``; stopping it
by process group, then its session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_py.engines import launch, standin
from bench_py.engines.http import OpenAISpeechTarget
from bench_py.engines.paths.common import (
    Context,
    PathError,
    after_ready,
    classify_log,
    engine_file_command,
    http_target,
    interesting,
    settles,
    wait_http_ready,
)
from bench_py.processes import RUN_ID_VARIABLE, pid_alive, process_start


# -- 2B: supervised host process -------------------------------------------------------------------
def fill_placeholders(argv: list[str], values: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def stop_process_group(pid: int, grace_s: float, start: str | None = None) -> dict[str, Any]:
    """SIGTERM to the engine's process group → wait ``grace_s`` → SIGKILL → verify it is gone.

    ``start`` is the start time recorded with the pid: a process that runs under that pid now but
    started at another time reused it, and is another's; it is not signalled."""
    if start is not None and pid_alive(pid) and not pid_alive(pid, start):
        return {"pid": pid, "signals": [], "verified": True, "pid_reused": True}
    steps = []
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not pid_alive(pid, start):
            break
        try:
            os.killpg(pid, sig)
            steps.append(sig.name)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while pid_alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.1)
    return {"pid": pid, "signals": steps, "verified": not pid_alive(pid, start)}


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, check=False)


class ProcessPath:
    """The engine's own server as a tmux session: attachable, outlives the phase that started it."""

    name, kind, streaming_capable = "2B", "process", True

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = ctx.candidate
        self.session = f"voxbench-{ctx.run_id.lower()}-2b"
        self.log = ctx.run_dir / "logs" / f"{self.session}.log"
        self.values = {"python": sys.executable, "port": str(cfg.port), "model": cfg.model}
        if cfg.process.venv:
            self.values["venv"] = str(Path(cfg.process.venv).expanduser())
        self.argv = fill_placeholders(cfg.process.command, self.values)
        self.pid: int | None = None
        self.pid_start: str | None = None  # tells the engine from a later process that reused its pid

    def _environment(self) -> list[str]:
        # A clean environment: the token's path, never its value, and nothing else inherited.
        keep = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
        keep.update({k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")})
        if "venv" in self.values:
            keep["VIRTUAL_ENV"] = self.values["venv"]
        keep["HF_TOKEN_PATH"] = str(self.ctx.token_file.expanduser().resolve())
        keep[RUN_ID_VARIABLE] = self.ctx.run_id  # what teardown and recovery find a leftover by
        return [f"{k}={v}" for k, v in keep.items()]

    def _launch(self) -> None:
        if shutil.which("tmux") is None:
            raise PathError("blocked", "tmux is not installed on this host (setup.yml installs it)")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # exec keeps one pid from tmux's pane to the engine; output goes to the run's log file.
        command = ["env", "-i", *self._environment(), "sh", "-c", 'exec "$@" >>"$0" 2>&1', str(self.log), *self.argv]
        result = tmux("new-session", "-d", "-s", self.session, "-x", "200", "-y", "50", "--", *command)
        if result.returncode != 0:
            raise PathError("blocked", f"tmux could not start the session {self.session}: {result.stderr.strip()}")
        shown = tmux("display-message", "-p", "-t", self.session, "#{pane_pid}")
        if shown.returncode != 0 or not shown.stdout.strip().isdigit():
            raise PathError("failed", f"the engine exited at once; log: {' | '.join(self.log_lines(10))}")
        self.pid = int(shown.stdout.strip())
        self.pid_start = process_start(self.pid)
        self.ctx.record_change({"processes": {"session": self.session, "pid": self.pid, "pid_start": self.pid_start}})

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        env = dict(item.split("=", 1) for item in self._environment())
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL, check=False
            )
        except OSError as error:
            raise PathError("blocked", f"{argv[0]} cannot run on this host: {error}") from None

    def _version(self) -> str:
        command = fill_placeholders(self.ctx.candidate.process.version_command or [], self.values)
        result = self._run(command)
        output = result.stdout.strip().splitlines()
        if result.returncode != 0 or not output:
            raise PathError(
                "failed", f"the version command {command} exited {result.returncode}", result.stderr.splitlines()[-5:]
            )
        return output[-1].strip()

    def _engine_file(self, relative: str) -> str:
        python = f"{self.values['venv']}/bin/python" if "venv" in self.values else sys.executable
        result = self._run(engine_file_command(python, relative))
        if result.returncode != 0:
            raise launch.LaunchError(f"the engine's environment has no {relative}: {result.stderr.strip()[-300:]}")
        return result.stdout

    def _launch_plan(self) -> dict[str, Any] | None:
        cfg = self.ctx.candidate
        if not cfg.process.version_command:
            return None
        try:
            planned = launch.plan(cfg.launch, self._version(), self.ctx.run_dir, self._engine_file)
            flags = launch.fill(planned["flags"], planned.get("stage_config"), planned.get("stage_overrides"))
        except launch.LaunchError as error:
            raise PathError("blocked", str(error)) from None
        self.argv = [*self.argv, *flags]
        return planned

    def _readback(self, planned: dict[str, Any]) -> dict[str, Any]:
        text = Path(planned["stage_config"]).read_text() if planned.get("stage_config") else None
        return {"engine_version": self._version(), "stage_utilizations": launch.given_to_engine(self.argv, text)}

    def start(self) -> dict[str, Any]:
        cfg = self.ctx.candidate
        if "venv" not in self.values and any("{venv}" in part for part in cfg.process.command):
            raise PathError(
                "blocked",
                "candidate.process.venv is not set: 2B runs vLLM-Omni from its own venv on this host "
                "(docs/install-paths.md, 2B)",
            )
        reason = standin.path_reason("2B", cfg)
        if reason and not self.ctx.allow_standins:
            raise PathError("blocked", f"{reason}; {standin.BLOCKED}")
        if shutil.which(self.argv[0]) is None:
            raise PathError("blocked", f"{self.argv[0]} is not installed on this host (candidate.process.command)")
        planned = self._launch_plan()
        url = f"http://127.0.0.1:{cfg.port}/health"
        try:
            self._launch()
            ready = wait_http_ready(url, cfg.ready_timeout_s, self._gone, self.ctx.should_stop)
        except PathError as error:
            lines = self.log_lines()
            raise PathError(classify_log(lines, error.status), error.reason, interesting(lines)) from None
        facts = {
            "process": {
                "session": self.session,
                "pid": self.pid,
                "pid_start": self.pid_start,
                "log": str(self.log.relative_to(self.ctx.run_dir)),
            },
            "standin": reason,
            "launch": planned,
            "launch_command": self.argv,
            "ready_after_s": round(ready, 3),
        }
        facts.update(after_ready(self.ctx, planned, lambda: self._readback(planned or {})))
        return facts

    def _gone(self) -> str | None:
        if self.pid is not None and pid_alive(self.pid):
            return None
        return f"the engine process exited during start-up; log: {' | '.join(interesting(self.log_lines(), 3))}"

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> OpenAISpeechTarget:
        return http_target(self.ctx, substitute_voice, preset_voice)

    def alive(self) -> bool:
        return settles(lambda: self.pid is not None and pid_alive(self.pid), self.ctx.candidate.port)

    def restart(self) -> None:
        self.stop()
        self._launch()
        url = f"http://127.0.0.1:{self.ctx.candidate.port}/health"
        wait_http_ready(url, self.ctx.candidate.ready_timeout_s, self._gone, self.ctx.should_stop)

    def log_lines(self, tail: int = 40) -> list[str]:
        try:
            return self.log.read_text(errors="replace").splitlines()[-tail:]
        except FileNotFoundError:
            return []

    def pids(self) -> list[int]:
        return [self.pid] if self.pid else []

    def stop(self) -> dict[str, Any]:
        return stop_session(self.session, self.pid, self.ctx.candidate.process.stop_grace_s, self.pid_start)


def stop_session(session: str, pid: int | None, grace_s: float, pid_start: str | None = None) -> dict[str, Any]:
    """Stop a 2B engine: its process group, then its tmux session; verify both are gone. A pid
    recorded with its start time is signalled only while it is still that process."""
    result: dict[str, Any] = {"session": session}
    if pid:
        result.update(stop_process_group(pid, grace_s, pid_start))
    if tmux("has-session", "-t", f"={session}").returncode == 0:
        tmux("kill-session", "-t", f"={session}")
    session_gone = tmux("has-session", "-t", f"={session}").returncode != 0
    result["verified"] = session_gone and (not pid or not pid_alive(pid, pid_start))
    return result
