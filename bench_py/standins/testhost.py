"""A real systemd + sshd host in a container, for rehearsing setup.yml and bench.yml over SSH.

Built like the other stand-ins, without a registry: a Debian root filesystem by debootstrap
(systemd, sshd, Python, sudo, ffmpeg), imported, then a layer adding a ``bench`` user with
passwordless sudo, this machine's apt configuration (so apt inside uses the same mirror),
package lists dated long ago (as on a host that has not run apt for a while), host keys
generated at first boot rather than baked in, and no getty. Run it with
``/sbin/init`` as PID 1; the bench user's ``authorized_keys`` is mounted at run time.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import Any

import docker

from bench_py.standins.images import BaseRecipe, Progress, build_base, build_layer

TESTHOST_RECIPE = BaseRecipe(
    repository="voxbench/testhost-base",
    packages=(
        "systemd",
        "systemd-sysv",
        "dbus",
        "openssh-server",
        "python3",
        "python3-apt",
        "sudo",
        "ca-certificates",
        "iproute2",
        "procps",
        "ffmpeg",
    ),
)
TESTHOST_REPOSITORY = "voxbench/testhost"
BENCH_USER = "bench"
BENCH_UID = 1000  # the first user useradd creates in the image

_DOCKERFILE = """FROM {base}
COPY apt/ /etc/apt/
RUN useradd --create-home --shell /bin/bash {user} \\
 && echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{user} && chmod 0440 /etc/sudoers.d/{user} \\
 && install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh \\
 && rm -f /etc/ssh/ssh_host_* \\
 && mkdir -p /etc/systemd/system/ssh.service.d \\
 && printf '[Service]\\nExecStartPre=\\nExecStartPre=/usr/bin/ssh-keygen -A\\nExecStartPre=/usr/sbin/sshd -t\\n' \\
      > /etc/systemd/system/ssh.service.d/hostkeys.conf \\
 && systemctl enable ssh.service \\
 && systemctl mask getty@tty1.service console-getty.service serial-getty@console.service \\
 && mkdir -p /var/lib/apt/lists/partial && apt-get update -qq \\
 && touch -d @0 /var/lib/apt/lists
LABEL io.voxbench.standin="testhost"
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""


def _apt_files() -> dict[str, Path]:
    """This machine's apt sources and settings, copied so apt inside reaches the same mirror."""
    files = {}
    for pattern in (
        "/etc/apt/sources.list",
        "/etc/apt/sources.list.d/*.sources",
        "/etc/apt/sources.list.d/*.list",
        "/etc/apt/apt.conf.d/*",
    ):
        for name in glob.glob(pattern):
            path = Path(name)
            if path.is_file():
                files[f"apt/{path.relative_to('/etc/apt')}"] = path
    return files


def build_testhost_image(client: docker.DockerClient, progress: Progress = print) -> str:
    base = build_base(client, TESTHOST_RECIPE, progress)
    files = _apt_files()
    dockerfile = _DOCKERFILE.format(base=base, user=BENCH_USER)
    digest = hashlib.sha256(dockerfile.encode())
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return build_layer(client, f"{TESTHOST_REPOSITORY}:{digest.hexdigest()[:16]}", dockerfile, files, progress)


def run_testhost(
    client: docker.DockerClient,
    image: str,
    name: str,
    ssh_port: int,
    authorized_keys: Path,
    labels: dict[str, str] | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
    network: str | None = None,
) -> Any:  # docker-py's Container
    """Start a test host: systemd as PID 1, sshd published on 127.0.0.1:``ssh_port``; on
    ``network`` (a user-defined one) the other hosts reach it by its name."""
    mounts = {
        "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"},
        str(authorized_keys): {"bind": f"/home/{BENCH_USER}/.ssh/authorized_keys", "mode": "ro"},
        "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
        **(volumes or {}),
    }
    return client.containers.run(
        image,
        name=name,
        hostname=name,
        detach=True,
        labels=labels or {},
        tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
        volumes=mounts,
        ports={"22/tcp": ("127.0.0.1", ssh_port)},
        stop_signal="SIGRTMIN+3",
        **({"network": network} if network else {}),
    )


class TestHostFleet:
    """Several test hosts sharing this machine's Docker daemon, and an inventory reaching them by SSH."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        client: docker.DockerClient,
        private_key: Path,
        authorized_keys: Path,
        workdir: Path,
        labels: dict[str, str] | None = None,
        progress: Progress = print,
        shared_root: Path | None = None,
        network: str | None = None,
        same_paths: dict[str, list[str]] | None = None,
    ) -> None:
        self.client, self.private_key, self.authorized_keys = client, private_key, authorized_keys
        self.workdir, self.labels, self.progress = workdir, labels or {}, progress
        # The hosts' own network, so that one reaches another by name (titan calls panda's API).
        self.network = network
        # Per host, directories of this machine mounted at the same path inside: files a host hands
        # to its engines' containers (which run on this machine's daemon) must be where the daemon looks.
        self.same_paths = same_paths or {}
        # Each host gets <shared_root>/<name> mounted at the same path inside: what a host hands to
        # sibling containers (the token file) must exist at that path for the shared Docker daemon too.
        self.shared_root = shared_root
        self.hosts: dict[str, dict[str, Any]] = {}
        self.image = ""
        self.inventory = workdir / "hosts.yml"
        # Host keys are checked, as for a real inventory: against the keys each host generated at
        # its first boot, read from inside it (docker exec) and written here before any SSH.
        self.known_hosts = workdir / "known_hosts"
        self.ssh_options = [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ]
        self.ssh_base = [
            "ssh",
            "-i",
            str(private_key),
            *self.ssh_options,
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
        ]

    def start(self, names: dict[str, bool], timeout_s: float = 60.0) -> None:
        """Start hosts (name → runs systemd as PID 1) and wait until each answers SSH."""
        import os
        import socket
        import subprocess
        import time

        self.image = build_testhost_image(self.client, self.progress)
        socket_gid = os.stat("/var/run/docker.sock").st_gid
        if self.network and not any(n.name == self.network for n in self.client.networks.list(names=[self.network])):
            self.client.networks.create(self.network, labels=self.labels)
        for name, systemd in names.items():
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            shared: dict[str, dict[str, str]] = {}
            if self.shared_root:
                path = self.shared_root / name
                path.mkdir(parents=True, exist_ok=True)
                shared = {str(path): {"bind": str(path), "mode": "rw"}}
            for same in self.same_paths.get(name, []):
                Path(same).mkdir(parents=True, exist_ok=True)
                os.chown(same, BENCH_UID, BENCH_UID)
                shared[same] = {"bind": same, "mode": "rw"}
            if systemd:
                container = run_testhost(
                    self.client, self.image, name, port, self.authorized_keys, self.labels, shared, self.network
                )
            else:  # sshd alone as PID 1: a host (or container) without systemd
                container = self.client.containers.run(
                    self.image,
                    ["sh", "-c", "ssh-keygen -A && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"],
                    name=name,
                    hostname=name,
                    detach=True,
                    labels=self.labels,
                    ports={"22/tcp": ("127.0.0.1", port)},
                    volumes={
                        str(self.authorized_keys): {"bind": f"/home/{BENCH_USER}/.ssh/authorized_keys", "mode": "ro"},
                        "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                        **shared,
                    },
                    **({"network": self.network} if self.network else {}),
                )
            for same in self.same_paths.get(name, []):  # the mount made its missing parents root's
                home = f"/home/{BENCH_USER}/"
                if same.startswith(home):
                    first = home + same[len(home) :].split("/")[0]
                    container.exec_run(["chown", f"{BENCH_UID}:{BENCH_UID}", first])
            # The daemon's socket belongs to this machine's docker group: give the host a group of that gid.
            container.exec_run(["sh", "-c", f"getent group {socket_gid} >/dev/null || groupadd -g {socket_gid} docker"])
            self.hosts[name] = {"container": container, "port": port, "systemd": systemd}
        self._write_known_hosts(timeout_s)
        for name, host in self.hosts.items():
            deadline = time.monotonic() + timeout_s
            while (
                subprocess.run(
                    [*self.ssh_base, "-p", str(host["port"]), f"{BENCH_USER}@127.0.0.1", "true"],
                    capture_output=True,
                    check=False,
                ).returncode
                != 0
            ):
                if time.monotonic() > deadline:
                    logs = host["container"].logs(tail=20).decode(errors="replace")
                    raise TimeoutError(f"test host {name} does not answer SSH within {timeout_s:g} s:\n{logs}")
                time.sleep(0.5)
        self._write_inventory()

    def host_keys(self, name: str, timeout_s: float = 60.0) -> list[str]:
        """The public host keys ``name`` generated at boot (``ssh-keygen -A``), read from inside it."""
        import time

        container = self.hosts[name]["container"]
        deadline = time.monotonic() + timeout_s
        command = ["sh", "-c", "cat /etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ecdsa_key.pub "
                   "/etc/ssh/ssh_host_rsa_key.pub 2>/dev/null"]  # fmt: skip
        while True:
            code, output = container.exec_run(command)
            keys = [line for line in output.decode().splitlines() if line.startswith(("ssh-", "ecdsa-"))]
            if code == 0 and len(keys) == 3:
                return [" ".join(line.split()[:2]) for line in keys]
            if time.monotonic() > deadline:
                raise TimeoutError(f"test host {name} has no host keys after {timeout_s:g} s")
            time.sleep(0.3)

    def _write_known_hosts(self, timeout_s: float) -> None:
        lines = []
        for name, host in self.hosts.items():
            lines += [f"[127.0.0.1]:{host['port']} {key}" for key in self.host_keys(name, timeout_s)]
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _write_inventory(self) -> None:
        lines = ["all:", "  children:", "    gpu_hosts:", "      hosts:"]
        for name, host in self.hosts.items():
            lines += [
                f"        {name}:",
                "          ansible_host: 127.0.0.1",
                f"          ansible_port: {host['port']}",
            ]
        lines += [
            "  vars:",
            f"    ansible_user: {BENCH_USER}",
            f"    ansible_ssh_private_key_file: {self.private_key}",
            f'    ansible_ssh_common_args: "{" ".join(self.ssh_options)}"',
            "    ansible_python_interpreter: /usr/bin/python3",
        ]
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text("\n".join(lines) + "\n")

    def remove(self) -> None:
        for host in self.hosts.values():
            host["container"].remove(force=True)
        self.hosts.clear()
        if self.network:
            for network in self.client.networks.list(names=[self.network]):
                if network.name == self.network:  # the filter matches part of a name
                    network.remove()
