"""``make rehearsal``: the production route on this machine, before anyone touches a real titan.

Two systemd + sshd test hosts named ``titan`` and ``panda`` on a network of their own. panda
serves the Chatterbox stand-in with panda's published API on port 8772; titan serves "Gemma"
(the co-tenant stand-in with Gemma's latency shape) on 8003 in a long-lived container that
pause-gemma stops and starts. The inventory is ``inventory/titan.example`` changed only in keys on
the written allow-list (:mod:`bench_py.standins.rehearsal_inventory`), with host keys checked
against a known_hosts file written here. ``setup.yml`` converges titan from the bundle (nothing of
the project is mounted into it) and prefetches the model's files from a gated Hub stand-in; then
``bench.yml`` runs twice: ``parallel`` against vLLM-Omni 0.30's behaviour and ``pause-gemma``
against 0.18's, with the open weights — so the cloned condition is taken by the preset the
sweep on titan finds closest.

titan's engines run on this machine's Docker daemon (the test host shares it), so the files it
hands them — its secrets and its Hugging Face cache — are this machine's directories mounted at
the same paths (``/var/lib/voxbench/secrets``, ``/home/bench/.cache/huggingface``); the rehearsal
creates them, marks them, and removes only what it marked.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors

from bench_py.engines.container import LABEL_BENCH, LABEL_HOST
from bench_py.standins import rehearsal_inventory
from bench_py.standins.testhost import BENCH_UID, BENCH_USER, TestHostFleet

TITAN, PANDA = "titan", "panda"
GEMMA, CHATTERBOX, HUB = "voxbench-rehearsal-gemma", "voxbench-rehearsal-chatterbox", "voxbench-rehearsal-hub"
NETWORK = "voxbench-rehearsal"
HUB_PORT = 8765
#: titan's directories its engines' containers need, at the same paths on this machine.
SAME_PATHS = ("/var/lib/voxbench/secrets", "/home/bench/.cache/huggingface")
MARKER = ".voxbench-rehearsal"
#: Gemma's name as vLLM serves it on titan (the co-tenant's model is read from /v1/models).
GEMMA_MODEL = "google/gemma-4-26B-A4B-it"
#: panda's Chatterbox: its published API on its port, the token and the references it reads.
CHATTERBOX_COMMAND = [
    "python3", "-m", "bench_py.standins.tts_server", "--api", "chatterbox", "--engine", "flite",
    "--host", "0.0.0.0", "--port", "8772", "--token-file", "/srv/chatterbox/token",
    "--references-dir", "/srv/chatterbox",
]  # fmt: skip
HUB_COMMAND = [
    "python3", "-m", "bench_py.standins.hf_hub", "--host", "0.0.0.0", "--port", str(HUB_PORT),
    "--token-file", "/srv/hub/token",
]  # fmt: skip
#: The runs: gemma_mode and the vLLM-Omni release the candidate image plays.
RUNS = (("parallel", "0.30.0"), ("pause-gemma", "0.18.0"))

Say = Callable[[str], None]


class RehearsalError(RuntimeError):
    """The rehearsal could not run or a run did not end as production's route should; says which."""


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


def _empty(folder: Path) -> None:
    """Everything in ``folder`` but the marker, removed."""
    for child in folder.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _marked(folder: Path) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], json.loads((folder / MARKER).read_text()))
    except (OSError, ValueError):
        return None


def claim_same_paths(say: Say) -> list[Path]:
    """Make titan's same-path directories on this machine, refusing any that is someone else's.
    A marker in each records the directories made for it (ancestors too), so that a rehearsal
    killed half-way is cleaned up by the next; what one left inside is emptied (a fresh cache, so
    the prefetch is rehearsed again). Returns what was created, for :func:`release_same_paths`."""
    for path in SAME_PATHS:
        folder = Path(path)
        if folder.exists() and _marked(folder) is None and any(folder.iterdir()):
            raise RehearsalError(
                f"{path} exists on this machine and is not the rehearsal's: titan's engines need that path; "
                "move it away or rehearse on another machine"
            )
    created: list[Path] = []
    for path in SAME_PATHS:
        folder = Path(path)
        earlier = _marked(folder)
        if earlier is not None:  # left by a rehearsal that was killed: take over what it made
            created += [Path(p) for p in earlier.get("created", []) if Path(p) not in created]
            _empty(folder)
        for part in [*reversed(folder.parents), folder]:
            if not part.exists():
                part.mkdir()
                created.append(part)
    for path in SAME_PATHS:
        record = {"made_by": "voxbench rehearsal", "created": [str(p) for p in created]}
        (Path(path) / MARKER).write_text(json.dumps(record) + "\n")
    say(f"titan shares {', '.join(SAME_PATHS)} with this machine at the same paths (its engines run here)")
    return created


def release_same_paths(created: list[Path], say: Say = print) -> None:
    """Empty and remove the marked same-path directories (the marker last), then the ancestors
    claimed for them; says what could not be removed."""
    for path in SAME_PATHS:
        folder = Path(path)
        if _marked(folder) is None:
            continue
        _empty(folder)
        left = [child.name for child in folder.iterdir() if child.name != MARKER]
        if left:
            say(f"could not remove {', '.join(left)} from {path}: remove them by hand")
            continue
        (folder / MARKER).unlink()
        folder.rmdir()
    for folder in sorted(set(created), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


class Rehearsal:
    """The rehearsal's steps, run in order by :func:`main` (``voxbench rehearsal``, ``make rehearsal``)."""

    def __init__(self, client: docker.DockerClient, project: Path, workdir: Path, say: Say = print) -> None:
        self.client, self.project, self.workdir, self.say = client, project, workdir, say
        self.fleet: TestHostFleet | None = None
        self.hosts: dict[str, dict[str, Any]] = {}
        self.network = NETWORK
        self.known_hosts = workdir / "known_hosts"
        self.private_key = workdir / "id_ed25519"
        self.inventory = workdir / "inventory"
        self.token_file = workdir / "hf_token"  # the controller's Hugging Face token (a rehearsal one)
        self.started: list[Any] = []
        self.reference: Path | None = None
        self.bundled = project  # replaced by the rehearsal's copy in start_production
        self.labels = {"io.voxbench.rehearsal": "true"}
        self.images: dict[str, str] = {}
        self.extra_vars: dict[str, Any] = {}  # what each playbook was given beside the inventory
        self.outputs: list[str] = []  # every playbook's output, searched for the token at the end
        self.hf_token = ""
        self.claimed: list[Path] = []

    # -- the hosts ---------------------------------------------------------------------------------
    def start_fleet(self) -> None:
        self._clear_leftovers()
        self.claimed = claim_same_paths(self.say)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.private_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.private_key)], check=True)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(Path(f"{self.private_key}.pub").read_text())
        authorized.chmod(0o644)
        self.fleet = TestHostFleet(
            self.client,
            self.private_key,
            authorized,
            self.workdir / "fleet",
            labels=self.labels,
            progress=self.say,
            network=self.network,
            same_paths={TITAN: list(SAME_PATHS)},
        )
        self.fleet.start({TITAN: True, PANDA: True})
        self.hosts, self.known_hosts = self.fleet.hosts, self.fleet.known_hosts

    def _engines(self) -> list[Any]:
        """Engine containers titan's runs started (on this machine's daemon; the runs remove them,
        a killed rehearsal does not)."""
        return [
            c
            for c in self.client.containers.list(all=True, filters={"label": f"{LABEL_BENCH}=true"})
            if c.labels.get(LABEL_HOST) in (TITAN, PANDA)
        ]

    def _clear_leftovers(self) -> None:
        """A rehearsal killed half-way leaves its containers: remove those (labelled), refuse others' names."""
        label = next(iter(self.labels))
        for container in [*self.client.containers.list(all=True, filters={"label": label}), *self._engines()]:
            self.say(f"removing {container.name}, left by an earlier rehearsal")
            container.remove(force=True)
        for name in (TITAN, PANDA, GEMMA, CHATTERBOX, HUB):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name)
                raise RehearsalError(f"a container named {name} exists and is not the rehearsal's: remove or rename it")
        for network in self.client.networks.list(names=[self.network]):
            if network.name == self.network:  # the filter matches part of a name
                network.remove()

    # -- production on those hosts ---------------------------------------------------------------
    def start_production(self, images: dict[str, str]) -> None:
        """Gemma on titan, Chatterbox on panda, a gated Hub on the hosts' network."""
        from bench_py.standins.demo import cotenant_command
        from bench_py.standins.reference import synthesize_reference
        from bench_py.voice.references import add_confirmed

        secrets_dir = Path(SAME_PATHS[0])
        self.images = images
        hf_token = self.hf_token = f"hf_rehearsal_{secrets.token_hex(12)}"
        self.token_file.write_text(hf_token + "\n")
        self.token_file.chmod(0o600)
        incumbent_token = secrets_dir / "incumbent_token"  # on titan, where titan.example names it
        incumbent_token.write_text(f"incumbent-rehearsal-{secrets.token_hex(8)}\n")
        os.chown(incumbent_token, BENCH_UID, BENCH_UID)
        incumbent_token.chmod(0o600)
        panda_files = self.workdir / "panda"
        (panda_files / "voice-references").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(incumbent_token, panda_files / "token")
        (panda_files / "token").chmod(0o644)  # read by panda's server as another user
        hub_token = self.workdir / "hub_token"
        hub_token.write_text(hf_token + "\n")
        hub_token.chmod(0o600)  # read by the Hub stand-in, which runs as root
        self.reference = self._reference(synthesize_reference, add_confirmed)
        shutil.copyfile(self.reference, panda_files / "voice-references" / "samantha.wav")  # as extract.yml copies it
        self._remove(GEMMA, CHATTERBOX, HUB)
        self.started = [
            self.client.containers.run(
                images["cotenant"],
                cotenant_command(8003, GEMMA_MODEL, host="127.0.0.1"),
                name=GEMMA,
                network_mode=f"container:{TITAN}",
                detach=True,
                labels=self.labels,
            ),
            self.client.containers.run(
                images["tts"],
                CHATTERBOX_COMMAND,
                name=CHATTERBOX,
                network_mode=f"container:{PANDA}",
                detach=True,
                labels=self.labels,
                volumes={str(panda_files): {"bind": "/srv/chatterbox", "mode": "ro"}},
            ),
            self.client.containers.run(
                images["tts"],
                HUB_COMMAND,
                name=HUB,
                network=self.network,
                detach=True,
                labels=self.labels,
                volumes={str(hub_token): {"bind": "/srv/hub/token", "mode": "ro"}},
            ),
        ]
        self._wait_answering()

    def _bundle_project(self) -> Path:
        """What setup.yml bundles for titan: this project's parts, copied, so that the stand-in
        reference confirmed for the rehearsal never enters the user's own store."""
        from bench_py.hosts.bundle import PROJECT_PARTS

        copy = self.workdir / "project"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        for part in ("pyproject.toml", "README.md", "constraints.txt", "bench_py", *PROJECT_PARTS):
            source = self.project / part
            if source.is_dir():
                shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif source.exists():
                shutil.copy2(source, copy / part)
        return copy

    def _reference(self, synthesize: Any, add_confirmed: Any) -> Path:
        """titan.example's reference, ``samantha``, in the bundled project's store: the user's own
        if confirmed, else the stand-in clip confirmed under that name there, said so."""
        from bench_py.voice.references import ReferenceError, verify

        self.bundled = self._bundle_project()
        store = self.bundled / "voice-references"
        try:
            return Path(verify(store, "samantha")["path"])
        except ReferenceError:
            pass
        clip = self.workdir / "samantha.wav"
        synthesize(str(clip))
        add_confirmed(store, "samantha", clip, "voxbench rehearsal: festival slt standing in for the real clip")
        self.say(f"confirmed the stand-in reference clip as 'samantha' in the rehearsal's copy ({store})")
        return store / "samantha.wav"

    def _wait_answering(self, timeout_s: float = 90.0) -> None:
        """Until each stand-in answers where its host reaches it (from inside that host)."""
        probes = [
            (TITAN, "http://127.0.0.1:8003/v1/models", f"{TITAN}'s production stand-in does not answer"),
            (PANDA, "http://127.0.0.1:8772/health", f"{PANDA}'s production stand-in does not answer"),
            (TITAN, f"http://{HUB}:{HUB_PORT}/health", "the Hub stand-in does not answer from titan"),
        ]
        deadline = time.monotonic() + timeout_s
        for name, url, failure in probes:
            command = f"python3 -c \"import urllib.request as u; u.urlopen('{url}', timeout=2)\""
            while self.hosts[name]["container"].exec_run(["sh", "-c", command])[0] != 0:
                if time.monotonic() > deadline:
                    raise RehearsalError(f"{failure} {url}")
                time.sleep(0.5)

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

    # -- the end -----------------------------------------------------------------------------------
    def _remove(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name).remove(force=True)

    def teardown(self) -> None:
        """Best effort, every step: what one step cannot remove does not keep the next from trying."""
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("production stand-ins", lambda: self._remove(GEMMA, CHATTERBOX, HUB)),
            ("engines", lambda: [c.remove(force=True) for c in self._engines()]),
        ]
        if self.fleet is not None:
            steps.append(("test hosts", self.fleet.remove))
        steps.append(("same-path directories", lambda: release_same_paths(self.claimed, self.say)))
        for what, step in steps:
            try:
                step()
            except Exception as error:  # report and go on: the rest must still be removed
                self.say(f"teardown: could not remove the {what}: {type(error).__name__}: {error}")


#: What titan may mount from this machine: its systemd's cgroups, the ssh key, the Docker socket
#: (its engines run on this machine's daemon) and the same-path data directories. No code.
TITAN_MOUNTS = {"/sys/fs/cgroup", "/home/bench/.ssh/authorized_keys", "/var/run/docker.sock", *SAME_PATHS}
LOCK = Path("/run/lock/voxbench-rehearsal.lock")


def _one_at_a_time(say: Say) -> Any:
    """The rehearsal's names and directories are fixed: one rehearsal per Docker host at a time."""
    import fcntl

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = LOCK.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise RehearsalError(f"another rehearsal is running on this machine ({handle.read().strip()})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the teardown in main's finally still runs


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


def main(project: Path, workdir: Path, say: Say = print) -> int:
    """``make rehearsal``: everything above, timed; exit 0 when both runs end as production's route
    should. What it saw goes to ``<workdir>/rehearsal.json`` (the test reads its facts there)."""
    from bench_py.standins.images import build_standins

    if os.geteuid() != 0:
        say(
            f"make rehearsal needs root: it makes {' and '.join(SAME_PATHS)} on this machine (titan's engines run "
            "on its Docker daemon) for the test hosts' bench user; run it as root or with sudo"
        )
        return 2
    started = time.monotonic()
    failures: list[str] = []
    report: dict[str, Any] = {"runs": []}
    try:
        lock = _one_at_a_time(say)
    except RehearsalError as error:
        say(str(error))
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupted)
    rehearsal = Rehearsal(docker.from_env(), project, workdir, say)
    try:
        images = build_standins(rehearsal.client, progress=say)
        rehearsal.start_fleet()
        rehearsal.start_production(images)
        report["inventory_diff"] = [list(row) for row in rehearsal.write_inventory()]
        say("setup.yml on titan (bundle, token, prefetch) ...")
        setup_started = time.monotonic()
        rehearsal.setup()
        report["setup_s"] = round(time.monotonic() - setup_started, 1)
        report["titan"] = rehearsal.titan_facts()
        failures += titan_problems(report["titan"])
        report["host_key_check"] = rehearsal.spoofed_host_key()
        if not report["host_key_check"]["refused"]:
            failures.append("titan answered with another host's keys in known_hosts: host keys are not checked")
        for gemma_mode, release in RUNS:
            say(f"bench.yml -e gemma_mode={gemma_mode} against vLLM-Omni {release} ...")
            outcome = rehearsal.bench(gemma_mode, release)
            verdict_file = outcome.run_dir / "verdict.json" if outcome.run_dir else None
            verdict = (
                json.loads(verdict_file.read_text())["verdict"] if verdict_file and verdict_file.is_file() else "-"
            )
            say(f"  {outcome.measurements.get('final_state')} in {outcome.seconds:.0f} s, verdict {verdict}")
            report["runs"].append(
                {
                    "gemma_mode": gemma_mode,
                    "release": release,
                    "returncode": outcome.returncode,
                    "seconds": round(outcome.seconds, 1),
                    "run_dir": str(outcome.run_dir) if outcome.run_dir else None,
                    "problems": outcome.problems,
                }
            )
            failures += [f"{gemma_mode}/{release}: {problem}" for problem in outcome.problems]
            if outcome.problems:
                say(outcome.output[-3000:])
        report["gemma_after"] = rehearsal.gemma_answers()
        if not report["gemma_after"]["answers"]:
            failures.append(f"Gemma does not answer after the runs: {report['gemma_after']}")
        report["token_found_in"] = rehearsal.token_leaks()
        if report["token_found_in"]:
            failures.append(f"the Hugging Face token was found in: {report['token_found_in']}")
    except (Exception, KeyboardInterrupt) as error:  # whatever ends it, the report says so and teardown runs
        failures.append(f"{type(error).__name__}: {error}")
    finally:
        rehearsal.teardown()
        signal.signal(signal.SIGTERM, previous)
        lock.close()
    seconds = time.monotonic() - started
    report.update(seconds=round(seconds, 1), failures=failures, passed=not failures, extra_vars=rehearsal.extra_vars)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rehearsal.json").write_text(json.dumps(report, indent=1) + "\n")
    say(f"rehearsal {'passed' if not failures else 'FAILED'} in {seconds:.0f} s (report: {workdir / 'rehearsal.json'})")
    for failure in failures:
        say(f"  {failure}")
    return 0 if not failures else 1
