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

import contextlib
import dataclasses
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench_py.audio import Pcm, read_wav_file
from bench_py.engines import container, inprocess, launch, ready, standin
from bench_py.engines.http import Condition, OpenAISpeechTarget
from bench_py.processes import pid_alive

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
    record_change: Callable[[dict[str, Any]], None] = lambda change: None
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


class ContainerPath:
    name, kind, streaming_capable = "2A", "container", True

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = ctx.candidate
        from bench_py.engines.docker_client import docker_client

        self.client = docker_client(ctx.docker_url)
        gpus = "nvidia" in (self.client.info().get("Runtimes") or {})
        self.spec = container.ContainerSpec(
            ctx.run_id,
            cfg.image,
            cfg.command,
            cfg.container_port,
            cfg.port,
            ctx.token_file,
            cfg.hf_token_mount,
            cpuset_cpus=cfg.cpuset_cpus,
            network_mode=cfg.network_mode,
            gpus=gpus,
            hf_cache=(cfg.hf_cache_dir, cfg.hf_cache_mount) if cfg.hf_cache_dir else None,
            ipc_mode=cfg.ipc_mode,
            shm_size=cfg.shm_size,
        )

    def _check_platform(self) -> dict[str, Any]:
        import docker.errors

        wanted = host_platform()
        try:
            offered, source = image_platforms(self.client, self.spec.image)
        except docker.errors.NotFound:
            raise PathError(
                "blocked",
                f"the image {self.spec.image} is not on this host nor in its registry; "
                "build it (voxbench images build) or set candidate.image",
            ) from None
        except docker.errors.APIError as error:
            raise PathError(
                "blocked",
                f"the image {self.spec.image} is not on this host and its registry did not answer: "
                f"{error.explanation or error}",
            ) from None
        facts = {"host": wanted, "offered": offered, "source": source}
        if not any(p == wanted or p.startswith(wanted + "/") for p in offered):
            raise PathError(
                "blocked",
                f"the image {self.spec.image} is built for {', '.join(offered) or 'no platform'} only; this host is "
                f"{wanted} (build a paired image for {wanted}: docs/install-paths.md)",
                [f"{source}: platforms {offered}"],
            )
        if source == "registry manifest":
            if not self.ctx.candidate.pull:
                raise PathError(
                    "blocked",
                    f"the image {self.spec.image} is in its registry for {wanted} but not on this host; "
                    f"docker pull {self.spec.image}, or set candidate.pull: true",
                )
            self.client.images.pull(self.spec.image, platform=wanted)
            facts["pulled"] = True
        return facts

    def _in_image(self, command: list[str], what: str) -> tuple[int, list[str]]:
        """Run the image once with ``command`` (no network, labelled, removed): its exit code and output."""
        import docker.errors

        name = f"{self.spec.name}-{what}"
        self.ctx.record_change({"containers": name})
        labels = {**self.spec.labels(), container.LABEL_ROLE: what}
        probe = self.client.containers.run(
            self.spec.image,
            command[1:],
            entrypoint=command[:1],
            name=name,
            detach=True,
            labels=labels,
            network_disabled=True,
        )
        try:
            exit_code = probe.wait(timeout=120).get("StatusCode")
            output = probe.logs(stderr=False).decode(errors="replace").splitlines()
            errors = probe.logs(stdout=False).decode(errors="replace").strip().splitlines()
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                probe.remove(force=True)
        return exit_code, output if exit_code == 0 else errors[-5:] or output[-5:]

    def _engine_version(self, command: list[str]) -> str:
        """The version the engine itself reports, which the image tag may not tell truthfully."""
        exit_code, output = self._in_image(command, "version-probe")
        lines = [line.strip() for line in output if line.strip()]
        if exit_code != 0 or not lines:
            raise PathError("failed", f"the version command {command} exited {exit_code}", output)
        return lines[-1]

    def _engine_file(self, relative: str) -> str:
        """A file of the engine's own package inside the image (its stage config)."""
        exit_code, output = self._in_image(engine_file_command("python3", relative), "config-probe")
        if exit_code != 0:
            raise launch.LaunchError(f"the image {self.spec.image} has no {relative}: {' | '.join(output)}")
        return "\n".join(output) + "\n"

    def _launch_plan(self) -> dict[str, Any] | None:
        cfg = self.ctx.candidate.launch
        if not cfg.version_command:
            return None
        try:
            planned = launch.plan(cfg, self._engine_version(cfg.version_command), self.ctx.run_dir, self._engine_file)
            mount = cfg.stage_config_mount if "stage_config" in planned else None
            flags = launch.fill(planned["flags"], mount, planned.get("stage_overrides"))
        except launch.LaunchError as error:
            raise PathError("blocked", str(error)) from None
        files = (
            ((cfg.stage_config_mount, Path(planned["stage_config"]).read_bytes()),) if "stage_config" in planned else ()
        )
        self.spec = dataclasses.replace(self.spec, command=[*self.spec.command, *flags], files=files)
        return planned

    def _readback(self, planned: dict[str, Any]) -> dict[str, Any]:
        """Ask the running engine again: its vLLM-Omni version, and the stage config it was given."""
        cfg = self.ctx.candidate.launch
        engine = self.client.containers.get(self.spec.name)
        result: dict[str, Any] = {}
        if cfg.version_command:
            exit_code, output = engine.exec_run(cfg.version_command, demux=True)
            text = (output[0] or b"").decode(errors="replace").strip().splitlines() if output else []
            result["engine_version"] = text[-1].strip() if exit_code == 0 and text else None
        text = None
        if "stage_config" in planned:
            exit_code, output = engine.exec_run(["cat", cfg.stage_config_mount], demux=True)
            text = (output[0] or b"").decode() if exit_code == 0 and output else ""
        result["stage_utilizations"] = launch.given_to_engine(list(engine.attrs["Args"]), text)
        return result

    def start(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"platform": self._check_platform()}
        reason = standin.path_reason("2A", self.ctx.candidate, self._image_labels())
        if reason and not self.ctx.allow_standins:
            raise PathError("blocked", f"{reason}; {standin.BLOCKED}")
        facts["standin"] = reason
        facts["launch"] = self._launch_plan()
        # Recorded before it exists, so recovery knows what to look for if we die mid-start.
        self.ctx.record_change({"containers": self.spec.name})
        facts["token"] = "file: read-only mount + HF_TOKEN_PATH"
        env_file = self.ctx.run_dir / ".hf_token.env"
        if self.ctx.candidate.token_mode == "env-file":
            facts["token"] = "env-file: HF_TOKEN in the container's environment (docker inspect shows it)"
            token = self.ctx.token_file.expanduser().read_text().strip()
            with os.fdopen(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
                handle.write(f"HF_TOKEN={token}\n")
            self.spec = dataclasses.replace(self.spec, env_file=env_file)
        try:
            facts["container"] = container.start(self.client, self.spec)
        except container.StartError as error:
            taken = PORT_TAKEN.search(str(error)) or "port is already allocated" in str(error)
            raise PathError("blocked" if taken else "failed", str(error)) from None
        finally:
            env_file.unlink(missing_ok=True)  # the seed deleted its env file once the container started
        facts["launch_command"] = self.spec.command
        facts["gpu_device_request"] = self.spec.gpus
        try:
            ready = container.wait_ready(
                self.client, self.spec, self.ctx.candidate.ready_timeout_s, self.ctx.should_stop
            )
        except container.StartError as error:
            lines = self.log_lines()
            raise PathError(classify_log(lines), str(error).splitlines()[0], interesting(lines)) from None
        facts["ready_after_s"] = round(ready, 3)
        facts.update(_after_ready(self.ctx, facts["launch"], lambda: self._readback(facts["launch"])))
        return facts

    def _image_labels(self) -> dict[str, str]:
        import docker.errors

        try:
            return dict(self.client.images.get(self.spec.image).labels or {})
        except docker.errors.ImageNotFound:
            return {}

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> OpenAISpeechTarget:
        return _http_target(self.ctx, substitute_voice, preset_voice)

    def alive(self) -> bool:
        engine = self.client.containers.get(self.spec.name)
        return _settles(lambda: (engine.reload(), engine.status == "running")[1], self.ctx.candidate.port)

    def restart(self) -> None:
        self.client.containers.get(self.spec.name).restart(timeout=10)
        container.wait_ready(self.client, self.spec, self.ctx.candidate.ready_timeout_s, self.ctx.should_stop)

    def log_lines(self, tail: int = 40) -> list[str]:
        import docker.errors

        try:
            return self.client.containers.get(self.spec.name).logs(tail=tail).decode(errors="replace").splitlines()
        except docker.errors.NotFound:
            return []

    def pids(self) -> list[int]:
        top = self.client.containers.get(self.spec.name).top(ps_args="-eo pid")
        return [int(row[0]) for row in top.get("Processes", [])]

    def stop(self) -> dict[str, Any]:
        return container.remove_run_containers(self.client, self.ctx.run_id, self.ctx.stop_grace_s)


def survives(path: InstallPath, seconds: float) -> bool:
    """Whether an engine stays up for ``seconds``: a failing engine may answer its error first and
    die later (vLLM's watchdog ends the server a few seconds after the engine core died)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not path.alive():
            return False
        time.sleep(0.5)
    return path.alive()


def _settles(running: Callable[[], bool], port: int, within_s: float = 10.0) -> bool:
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


def _after_ready(
    ctx: Context, planned: dict[str, Any] | None, readback: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
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
    reported = _reported(cfg.port)
    facts["vllm_version"] = reported.get("version")
    if planned:
        planned["readback"] = readback()
        planned["pairing"] = launch.pairing_note(planned["engine_version"], facts["vllm_version"])
        mismatch = launch.check_loaded(planned, planned["readback"])
        if mismatch:
            raise PathError("failed", mismatch)
    facts["voices"], facts["preset_voice"] = preset_voice(cfg.port, cfg.preset_voice)
    return facts


def _reported(port: int) -> dict[str, Any]:
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


def _http_target(ctx: Context, substitute_voice: str | None, preset: str | None) -> OpenAISpeechTarget:
    cfg = ctx.candidate
    return OpenAISpeechTarget(
        f"http://127.0.0.1:{cfg.port}/v1/audio/speech",
        cfg.model,
        preset or cfg.preset_voice or "",
        str(ctx.run_dir / "reference.wav"),
        substitute_voice,
        cfg.sample_rate,
    )


# -- 2B: supervised host process -------------------------------------------------------------------
def _fill(argv: list[str], values: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def stop_process_group(pid: int, grace_s: float) -> dict[str, Any]:
    """SIGTERM to the engine's process group → wait ``grace_s`` → SIGKILL → verify it is gone."""
    steps = []
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not pid_alive(pid):
            break
        try:
            os.killpg(pid, sig)
            steps.append(sig.name)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return {"pid": pid, "signals": steps, "verified": not pid_alive(pid)}


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
        self.argv = _fill(cfg.process.command, self.values)
        self.pid: int | None = None

    def _environment(self) -> list[str]:
        # A clean environment: the token's path, never its value, and nothing else inherited.
        keep = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
        keep.update({k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")})
        if "venv" in self.values:
            keep["VIRTUAL_ENV"] = self.values["venv"]
        keep["HF_TOKEN_PATH"] = str(self.ctx.token_file.expanduser().resolve())
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
        self.ctx.record_change({"processes": {"session": self.session, "pid": self.pid}})

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        env = dict(item.split("=", 1) for item in self._environment())
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL, check=False
            )
        except OSError as error:
            raise PathError("blocked", f"{argv[0]} cannot run on this host: {error}") from None

    def _version(self) -> str:
        command = _fill(self.ctx.candidate.process.version_command or [], self.values)
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
            "process": {"session": self.session, "pid": self.pid, "log": str(self.log.relative_to(self.ctx.run_dir))},
            "standin": reason,
            "launch": planned,
            "launch_command": self.argv,
            "ready_after_s": round(ready, 3),
        }
        facts.update(_after_ready(self.ctx, planned, lambda: self._readback(planned or {})))
        return facts

    def _gone(self) -> str | None:
        if self.pid is not None and pid_alive(self.pid):
            return None
        return f"the engine process exited during start-up; log: {' | '.join(interesting(self.log_lines(), 3))}"

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> OpenAISpeechTarget:
        return _http_target(self.ctx, substitute_voice, preset_voice)

    def alive(self) -> bool:
        return _settles(lambda: self.pid is not None and pid_alive(self.pid), self.ctx.candidate.port)

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
        return stop_session(self.session, self.pid, self.ctx.candidate.process.stop_grace_s)


def stop_session(session: str, pid: int | None, grace_s: float) -> dict[str, Any]:
    """Stop a 2B engine: its process group, then its tmux session; verify both are gone."""
    result: dict[str, Any] = {"session": session}
    if pid:
        result.update(stop_process_group(pid, grace_s))
    if tmux("has-session", "-t", f"={session}").returncode == 0:
        tmux("kill-session", "-t", f"={session}")
    session_gone = tmux("has-session", "-t", f"={session}").returncode != 0
    result["verified"] = session_gone and (not pid or not pid_alive(pid))
    return result


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

    def _load(self) -> inprocess.InProcessEngine:
        if self.engine is None:
            cfg, candidate = self.ctx.candidate.in_process, self.ctx.candidate
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
        # BENCHING runs in a later process than STARTING: the model is loaded again there.
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
        self.engine = None  # the model goes with this process; nothing outlives the phase
        return {"verified": True, "released": "with the benchmark process"}


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
            argv = _fill(self.cfg.command or [], {"text_file": str(text_file), "wav": str(wav), "voice": voice or ""})
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder}
            env["HF_TOKEN_PATH"] = str(self.ctx.token_file.expanduser().resolve())
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


def make(name: str, ctx: Context) -> InstallPath:
    classes = {"2A": ContainerPath, "2B": ProcessPath, "2C": InProcessPath, "2D": BatchPath}
    return classes[name](ctx)
