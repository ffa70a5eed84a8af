"""2A: the engine image under Docker (GPU by device request when the NVIDIA runtime is there),
token as a read-only file mount."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from bench_py.engines import container, launch, standin
from bench_py.engines.http import OpenAISpeechTarget
from bench_py.engines.paths.common import (
    PORT_TAKEN,
    Context,
    PathError,
    after_ready,
    classify_log,
    engine_file_command,
    host_platform,
    http_target,
    image_platforms,
    interesting,
    settles,
)


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
        facts: dict[str, Any] = {"host": wanted, "offered": offered, "source": source}
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
        facts.update(after_ready(self.ctx, facts["launch"], lambda: self._readback(facts["launch"])))
        return facts

    def _image_labels(self) -> dict[str, str]:
        import docker.errors

        try:
            return dict(self.client.images.get(self.spec.image).labels or {})
        except docker.errors.ImageNotFound:
            return {}

    def target(self, substitute_voice: str | None = None, preset_voice: str | None = None) -> OpenAISpeechTarget:
        return http_target(self.ctx, substitute_voice, preset_voice)

    def alive(self) -> bool:
        engine = self.client.containers.get(self.spec.name)
        return settles(lambda: (engine.reload(), engine.status == "running")[1], self.ctx.candidate.port)

    def restart(self) -> None:
        self.client.containers.get(self.spec.name).restart(timeout=10)
        container.wait_ready(self.client, self.spec, self.ctx.candidate.ready_timeout_s, self.ctx.should_stop)

    def log_lines(self, tail: int = 40) -> list[str]:
        import docker.errors

        try:
            logs: bytes = self.client.containers.get(self.spec.name).logs(tail=tail)
            return logs.decode(errors="replace").splitlines()
        except docker.errors.NotFound:
            return []

    def pids(self) -> list[int]:
        top = self.client.containers.get(self.spec.name).top(ps_args="-eo pid")
        return [int(row[0]) for row in top.get("Processes", [])]

    def stop(self) -> dict[str, Any]:
        return container.remove_run_containers(self.client, self.ctx.run_id, self.ctx.stop_grace_s)
