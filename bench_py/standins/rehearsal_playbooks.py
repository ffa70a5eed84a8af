"""The rehearsal's route on its test hosts: the inventory (``inventory/titan.example`` changed
only on the allow-list), ``setup.yml`` and the two ``bench.yml`` runs, and what each must show —
the run's documents, titan's venv and mounts, a host-key check that refuses, no token anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from bench_py.standins import rehearsal_inventory
from bench_py.standins.rehearsal_hosts import (
    CHATTERBOX,
    GEMMA,
    GEMMA_MODEL,
    HUB,
    HUB_PORT,
    PANDA,
    SAME_PATHS,
    TITAN,
    RehearsalError,
    RehearsalHosts,
    Say,
)
from bench_py.standins.testhost import BENCH_USER

#: The runs: gemma_mode and the vLLM-Omni release the candidate image plays.
RUNS = (("parallel", "0.30.0"), ("pause-gemma", "0.18.0"))
#: What titan may mount from this machine: its systemd's cgroups, the ssh key, the Docker socket
#: (its engines run on this machine's daemon) and the same-path data directories. No code.
TITAN_MOUNTS = {"/sys/fs/cgroup", "/home/bench/.ssh/authorized_keys", "/var/run/docker.sock", *SAME_PATHS}


@dataclass
class RunOutcome:
    gemma_mode: str
    release: str
    returncode: int
    seconds: float
    run_dir: Path | None
    measurements: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    output: str = ""


class Rehearsal(RehearsalHosts):
    """The rehearsal's steps, run in order by :func:`bench_py.standins.rehearsal.main`
    (``voxbench rehearsal``, ``make rehearsal``): the hosts' (:class:`RehearsalHosts`), then the
    inventory, the playbooks and what they left."""

    def __init__(self, client: docker.DockerClient, project: Path, workdir: Path, say: Say = print) -> None:
        super().__init__(client, project, workdir, say)
        self.inventory = workdir / "inventory"
        self.extra_vars: dict[str, Any] = {}  # what each playbook was given beside the inventory
        self.outputs: list[str] = []  # every playbook's output, searched for the token at the end

    # -- the inventory ---------------------------------------------------------------------------
    def write_inventory(self) -> list[tuple[str, Any, Any]]:
        example = self.project / "inventory" / "titan.example"
        rehearsal_inventory.generate(
            example,
            self.inventory,
            {name: {"ansible_host": "127.0.0.1", "ansible_port": self.hosts[name]["port"]} for name in (TITAN, PANDA)},
            self.private_key,
            self.known_hosts,
            image=self.images[f"vllm-omni-{RUNS[0][1]}"],
            network_mode=f"container:{TITAN}",
            cotenant_container=GEMMA,
            incumbent_url=f"http://{PANDA}:8772/tts",
        )
        diff = rehearsal_inventory.inventory_diff(
            rehearsal_inventory.load(example), rehearsal_inventory.load(self.inventory)
        )
        self.say("the inventory differs from inventory/titan.example in:\n" + rehearsal_inventory.render_diff(diff))
        outside = rehearsal_inventory.outside_allow_list(diff)
        if outside:
            raise RehearsalError(f"keys outside the allow-list: {[key for key, _, _ in outside]}")
        return diff

    # -- playbooks ---------------------------------------------------------------------------------
    def _playbook(
        self, playbook: str, variables: dict[str, Any], *args: str, timeout_s: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """ansible-playbook in a session of its own: on a timeout the whole group goes (its workers,
        its SSH), and the rehearsal's teardown removes what the run started."""
        bin_dir = Path(sys.executable).parent
        self.extra_vars[" ".join([playbook, *args])] = variables
        command = [str(bin_dir / "ansible-playbook"), "-i", str(self.inventory), playbook, "-e", json.dumps(variables)]
        process = subprocess.Popen(
            [*command, *args],
            cwd=self.project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
        )
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RehearsalError(f"{playbook} did not end within {timeout_s:.0f} s") from None
        finally:
            if process.poll() is None:  # interrupted: take the playbook's group with us
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.outputs.append(output)
        return subprocess.CompletedProcess(process.args, process.returncode, output, "")

    def setup(self) -> subprocess.CompletedProcess[str]:
        """setup.yml from the rehearsal inventory, with the prefetch from the Hub stand-in."""
        variables = {
            "voxbench_token_source_file": str(self.token_file),
            "voxbench_prefetch_enabled": True,
            "voxbench_prefetch_endpoint": f"http://{HUB}:{HUB_PORT}",
            "voxbench_runtime_controller_project": str(self.bundled),
            "voxbench_runtime_bundle_cache": str(self.workdir / "bundles"),
        }
        result = self._playbook("setup.yml", variables)
        if result.returncode != 0:
            raise RehearsalError(f"setup.yml failed on the rehearsal hosts:\n{result.stdout[-4000:]}")
        return result

    def bench(self, gemma_mode: str, release: str) -> RunOutcome:
        runs = self.workdir / "runs"
        variables = {
            # The fast profile keeps the rehearsal to minutes; it changes sizes (utterances, probes), not the route.
            "voxbench_config": {"profile": "fast", "candidate": {"image": self.images[f"vllm-omni-{release}"]}},
            "voxbench_collector_dest": str(runs),
            "voxbench_watcher_poll_s": 2,
            "voxbench_artifacts_repo": str(self.workdir / "artifacts" / "checkout"),
            "voxbench_artifacts_embedded_origin": True,
        }
        before = set(runs.iterdir()) if runs.is_dir() else set()
        started = time.monotonic()
        result = self._playbook("bench.yml", variables, "-e", f"gemma_mode={gemma_mode}")
        seconds = time.monotonic() - started
        new = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
        outcome = RunOutcome(
            gemma_mode, release, result.returncode, seconds, new[-1] if new else None, output=result.stdout
        )
        if outcome.run_dir is not None and (outcome.run_dir / "measurements.json").is_file():
            outcome.measurements = json.loads((outcome.run_dir / "measurements.json").read_text())
        outcome.problems = self.check(outcome)
        return outcome

    def check(self, outcome: RunOutcome) -> list[str]:
        """What production's route must show: DONE; the cloned condition taken by the preset
        substitute, scored on titan; no engine left on either host; Gemma back within bounds."""
        problems = []
        m = outcome.measurements
        if outcome.returncode != 0 or m.get("final_state") != "DONE":
            return [f"bench.yml ended {outcome.returncode}, the run {m.get('final_state')}: {m.get('reason')}"]
        selected: dict[str, Any] = next((p for p in m["install_paths"]["paths"] if p["status"] == "ok"), {})
        if selected.get("launch", {}).get("engine_version") != outcome.release:
            problems.append(
                f"the engine reported {selected.get('launch', {}).get('engine_version')}, not {outcome.release}"
            )
        sweep = selected.get("preset_sweep") or {}
        if selected.get("cloning") != "preset_substitute" or not any(
            v is not None for v in sweep.get("scores", {}).values()
        ):
            problems.append(
                f"the cloned condition was not a preset substitute scored on titan: {sweep.get('unavailable')}"
            )
        if not m["teardown"]["removal"]["verified"] or not m["teardown"]["postflight"]["ok"]:
            problems.append(f"teardown: {m['teardown']['removal']} / {m['teardown']['postflight'].get('reason')}")
        if outcome.gemma_mode == "pause-gemma" and not (m["teardown"]["cotenant_restore"] or {}).get("ok"):
            problems.append(f"Gemma was not restored: {m['teardown']['cotenant_restore']}")
        orphans = [
            c.name
            for c in self.client.containers.list(all=True, filters={"label": "io.voxbench.bench=true"})
            if c.labels.get("io.voxbench.host") in (TITAN, PANDA)
        ]
        if orphans:
            problems.append(f"orphan containers: {orphans}")
        # An engine joins its host's network namespace, never its PID namespace: a process left
        # behind is a container still running in a host's namespace, besides production's own.
        for name in (TITAN, PANDA):
            host_id = self.hosts[name]["container"].id
            left = [
                c.name
                for c in self.client.containers.list()
                if c.attrs["HostConfig"].get("NetworkMode") in (f"container:{name}", f"container:{host_id}")
                and c.name not in (GEMMA, CHATTERBOX)
            ]
            if left:
                problems.append(f"engines still running in {name}'s namespace: {left}")
        return problems

    # -- what titan shows ----------------------------------------------------------------------------
    def titan_facts(self) -> dict[str, Any]:
        """Where titan runs voxbench from, as the bench user: the import check of everything the
        host-side run reaches (scorer run once), where bench_py, resemblyzer and torch come from,
        and what the host mounts from this machine."""
        titan = self.hosts[TITAN]["container"]
        python = "/opt/voxbench/venv/bin/python"
        closure = [python, "-m", "bench_py.hosts.closure", "--project", "/opt/voxbench/project"]
        code, out = titan.exec_run(closure, user=BENCH_USER)
        where = "import bench_py, resemblyzer, torch; print(bench_py.__file__, resemblyzer.__file__, torch.__file__)"
        where_code, where_out = titan.exec_run([python, "-c", where], user=BENCH_USER)
        titan.reload()
        files = where_out.decode().split() if where_code == 0 else []
        return {
            "closure": {"returncode": code, "output": out.decode(errors="replace")[-3000:]},
            "imported_from": dict(zip(("bench_py", "resemblyzer", "torch"), files, strict=False)),
            "mounts": [{"source": m["Source"], "destination": m["Destination"]} for m in titan.attrs["Mounts"]],
        }

    def spoofed_host_key(self) -> dict[str, Any]:
        """titan's address with panda's host keys in known_hosts: SSH must refuse (a fresh connection,
        not one a run multiplexed)."""
        port = {name: self.hosts[name]["port"] for name in (TITAN, PANDA)}
        keys = [
            line.split(" ", 1)[1]
            for line in self.known_hosts.read_text().splitlines()
            if line.startswith(f"[127.0.0.1]:{port[PANDA]} ")
        ]
        spoof = self.workdir / "spoofed"
        shutil.rmtree(spoof, ignore_errors=True)
        (spoof / "group_vars").mkdir(parents=True)
        (spoof / "known_hosts").write_text("".join(f"[127.0.0.1]:{port[TITAN]} {key}\n" for key in keys))
        hosts = (self.inventory / "hosts.yml").read_text().replace(str(self.known_hosts), str(spoof / "known_hosts"))
        (spoof / "hosts.yml").write_text(hosts)
        shutil.copyfile(self.inventory / "group_vars" / "gpu_hosts.yml", spoof / "group_vars" / "gpu_hosts.yml")
        bin_dir = Path(sys.executable).parent
        result = subprocess.run(
            [str(bin_dir / "ansible"), TITAN, "-i", str(spoof), "-m", "ansible.builtin.ping"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.project,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(spoof / "cp"), "ANSIBLE_NOCOLOR": "1"},
        )
        output = result.stdout + result.stderr
        return {
            "returncode": result.returncode,
            "refused": result.returncode != 0 and "Host key verification failed" in output,
            "output": output[-1500:],
        }

    def token_leaks(self) -> list[str]:
        """Where the rehearsal's Hugging Face token shows, besides the files meant to hold it: the
        runs collected, the pushed branch's history, every playbook's output, titan's journal and
        the containers' configuration (docker inspect)."""
        needle = self.hf_token
        found = [
            str(path.relative_to(self.workdir))
            for path in (self.workdir / "runs").rglob("*")
            if path.is_file() and needle.encode() in path.read_bytes()
        ]
        origin = self.workdir / "artifacts" / "origin.git"
        if origin.is_dir():
            history = subprocess.run(
                ["git", "-C", str(origin), "log", "--all", "-p", "--no-ext-diff"], capture_output=True, text=True
            ).stdout
            found += ["the pushed branch's history"] if needle in history else []
        found += [f"the output of playbook {i + 1}" for i, text in enumerate(self.outputs) if needle in text]
        _, journal = self.hosts[TITAN]["container"].exec_run(["journalctl", "--no-pager", "-q"])
        found += ["titan's journal"] if needle.encode() in journal else []
        for container in self.client.containers.list(all=True):
            if container.name in (TITAN, PANDA, GEMMA, CHATTERBOX, HUB) and needle in json.dumps(container.attrs):
                found.append(f"docker inspect {container.name}")
        return found

    def gemma_answers(self) -> dict[str, Any]:
        """Gemma's container runs and answers a chat request on titan's loopback."""
        gemma = self.client.containers.get(GEMMA)
        body = json.dumps({"model": GEMMA_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        request = (
            "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8003/v1/chat/completions', "
            f"{body!r}.encode(), {{'Content-Type': 'application/json'}}), timeout=10)"
        )
        code, out = self.hosts[TITAN]["container"].exec_run(["python3", "-c", request])
        return {"status": gemma.status, "answers": code == 0, "output": out.decode(errors="replace")[-500:]}


def titan_problems(facts: dict[str, Any]) -> list[str]:
    problems = []
    if facts["closure"]["returncode"] != 0 or "the scorer runs here" not in facts["closure"]["output"]:
        problems.append(f"titan's venv does not import (and run) all it can reach:\n{facts['closure']['output']}")
    outside = {k: v for k, v in facts["imported_from"].items() if not v.startswith("/opt/voxbench/venv/")}
    if len(facts["imported_from"]) != 3 or outside:
        problems.append(
            f"titan does not import bench_py, resemblyzer and torch from its venv: {facts['imported_from']}"
        )
    mounted = {mount["destination"] for mount in facts["mounts"]} - TITAN_MOUNTS
    if mounted:
        problems.append(f"titan mounts more from this machine than its data: {sorted(mounted)}")
    return problems
