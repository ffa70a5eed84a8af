"""The rehearsal's stage: the test hosts ``titan`` and ``panda``, the directories titan shares
with this machine, the production stand-ins they serve (Gemma on titan, Chatterbox on panda, a
gated Hub on their network) and the teardown that removes them all.

:class:`RehearsalHosts` brings them up and waits until each stand-in answers;
:class:`~bench_py.standins.rehearsal_playbooks.Rehearsal` drives the playbooks on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors

from bench_py.engines.container import LABEL_BENCH, LABEL_HOST
from bench_py.standins.testhost import BENCH_UID, TestHostFleet

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

Say = Callable[[str], None]


class RehearsalError(RuntimeError):
    """The rehearsal could not run or a run did not end as production's route should; says which."""


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


class RehearsalHosts:
    """The test hosts and the production stand-ins on them, up (:meth:`start_fleet`,
    :meth:`start_production`) and down again (:meth:`teardown`)."""

    def __init__(self, client: docker.DockerClient, project: Path, workdir: Path, say: Say = print) -> None:
        self.client, self.project, self.workdir, self.say = client, project, workdir, say
        self.fleet: TestHostFleet | None = None
        self.hosts: dict[str, dict[str, Any]] = {}
        self.network = NETWORK
        self.known_hosts = workdir / "known_hosts"
        self.private_key = workdir / "id_ed25519"
        self.token_file = workdir / "hf_token"  # the controller's Hugging Face token (a rehearsal one)
        self.started: list[Any] = []
        self.reference: Path | None = None
        self.bundled = project  # replaced by the rehearsal's copy in start_production
        self.labels = {"io.voxbench.rehearsal": "true"}
        self.images: dict[str, str] = {}
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
