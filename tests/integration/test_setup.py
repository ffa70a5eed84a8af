"""setup.yml against real hosts over SSH: check mode, converge, idempotence, verify, the sweep."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import docker.errors
import pytest

from bench_py.engines.container import LABEL_BENCH, LABEL_EXPIRES, LABEL_HOST, LABEL_RUN
from tests.integration.conftest import SETUP_CANARY as CANARY
from tests.integration.conftest import recap

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent


def sh(test_hosts, name: str, command: str) -> tuple[int, str]:
    exit_code, output = test_hosts["hosts"][name]["container"].exec_run(["sh", "-c", command])
    return exit_code, output.decode()


def test_check_mode_on_fresh_hosts_tells_and_changes_nothing(converged):
    check = converged["check"]
    assert check.returncode == 0, check.stdout[-4000:]
    assert all(row["failed"] == 0 and row["changed"] > 0 for row in recap(check.stdout).values())


def test_converge_then_the_second_run_changes_nothing(converged, test_hosts):
    first, second = converged["first"], converged["second"]
    assert first.returncode == 0, first.stdout[-5000:]
    assert second.returncode == 0, second.stdout[-5000:]
    assert set(recap(first.stdout)) == set(test_hosts["hosts"])
    assert all(row["changed"] > 0 for row in recap(first.stdout).values())
    assert {h: r["changed"] for h, r in recap(second.stdout).items()} == dict.fromkeys(test_hosts["hosts"], 0)


def test_the_token_never_reaches_ansible_output(converged):
    for result in converged.values():
        assert CANARY not in result.stdout + result.stderr


def test_hosts_have_what_a_bench_needs(converged, test_hosts):
    for name, host in test_hosts["hosts"].items():
        assert sh(test_hosts, name, "dpkg -s git-lfs tmux ffmpeg python3-venv >/dev/null")[0] == 0
        code, out = sh(
            test_hosts, name, "/opt/voxbench/venv/bin/python -c 'import bench_py.version as v; print(v.version_id())'"
        )
        assert code == 0 and out.strip().startswith("0.1.0+"), out
        assert sh(test_hosts, name, "/opt/voxbench/venv/bin/voxbench run --help")[0] == 0  # the host-side run
        assert sh(test_hosts, name, "test -x /opt/voxbench/venv/bin/ansible-playbook")[0] == 0
        assert sh(test_hosts, name, "stat -c '%a %U' /var/lib/voxbench/secrets")[1].strip() == "700 bench"
        assert sh(test_hosts, name, "stat -c '%a %U' /run/voxbench")[1].strip() == "755 bench"  # the boot marker's
        # The token goes where the run reads it: this inventory keeps the default paths.token_file.
        token = "/home/bench/.config/voxbench/hf_token"
        modes = sh(test_hosts, name, f"stat -c '%a %U' {token} $(dirname {token})")[1].split("\n")
        assert modes[:2] == ["600 bench", "700 bench"]
        assert sh(test_hosts, name, f"cat {token}")[1].strip() == CANARY
        assert "docker" in sh(test_hosts, name, "id -nG bench")[1].split()
        assert sh(test_hosts, name, "su bench -c 'git config --global --get filter.lfs.clean'")[0] == 0
        if host["systemd"]:
            assert "voxbench-cleanup.timer" in sh(test_hosts, name, "systemctl list-timers --all")[1]
            assert sh(test_hosts, name, "systemctl is-enabled voxbench-recover.service")[1].strip() == "enabled"
            assert sh(test_hosts, name, "test -f /var/lib/systemd/linger/bench")[0] == 0
            # Every voxbench unit, as systemd sees it (environment, command lines): no token.
            shown = sh(test_hosts, name, "systemctl show 'voxbench-*' --all --no-pager")[1]
            assert "voxbench-cleanup" in shown and CANARY not in shown
        else:
            assert sh(test_hosts, name, "test -e /etc/systemd/system/voxbench-cleanup.timer")[0] != 0
    assert "does not run systemd as PID 1" in converged["first"].stdout


def test_the_sweep_removes_only_expired_labelled_containers_of_its_host(
    converged, test_hosts, docker_client, test_run_label
):
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat(timespec="seconds")
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat(timespec="seconds")

    def start(name: str, labels: dict[str, str]):
        return docker_client.containers.run(
            test_hosts["image"], ["sleep", "600"], name=name, detach=True, labels={test_run_label: "sweep", **labels}
        )

    bench = {LABEL_BENCH: "true", LABEL_RUN: "BENCHMARK-VOXTRAL-VBHOST1-20260101-000000"}
    expired = start("sweep-expired", {**bench, LABEL_HOST: "vbhost1", LABEL_EXPIRES: past})
    young = start("sweep-young", {**bench, LABEL_HOST: "vbhost1", LABEL_EXPIRES: future})
    other_host = start("sweep-other-host", {**bench, LABEL_HOST: "vbhost2", LABEL_EXPIRES: past})
    unlabelled = start("sweep-unlabelled", {})
    try:
        code, out = sh(
            test_hosts,
            "vbhost1",
            "systemctl start voxbench-cleanup.service; journalctl -u voxbench-cleanup.service --no-pager",
        )
        assert code == 0, out
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert "sweep-expired" not in names
        assert {"sweep-young", "sweep-other-host", "sweep-unlabelled"} <= names
        assert "removed sweep-expired" in out and "past its expiry" in out
        # --dry-run on the controller says what it would remove and removes nothing.
        dry = subprocess.run(
            [str(BIN / "voxbench"), "cleanup", "--dry-run", "--host", "vbhost2", "--skip-recover"],
            capture_output=True,
            text=True,
        )
        assert "would remove sweep-other-host" in dry.stdout
        assert "sweep-other-host" in {c.name for c in docker_client.containers.list(all=True)}
    finally:
        for container in (expired, young, other_host, unlabelled):
            with contextlib.suppress(docker.errors.NotFound):  # the sweep removed it already
                container.remove(force=True)


def test_bundle_manifest_names_the_hosts_platform(converged, test_hosts):
    _, out = sh(test_hosts, "vbhost1", "cat /opt/voxbench/releases/*/manifest.json")
    manifest = json.loads(out)
    assert manifest["python"] == "3.11" and manifest["machine"] in ("x86_64", "aarch64")
    assert any(w.startswith("voxbench-0.1.0") for w in manifest["wheels"])
    assert any(w.startswith("ansible_core-2.19") for w in manifest["wheels"])
