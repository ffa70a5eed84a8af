"""One run, one process on the host: the timed requests come from `voxbench run`, started in tmux
by the launch module, and no Ansible runs in between."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench_py.run.state import StateStore
from tests.helpers import bench_containers
from tests.integration.test_gate import (
    host_measurements,
    start_playbook,
    wait_for_state,
    wait_for_timed_requests,
    wait_terminal,
)

pytestmark = pytest.mark.docker


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state; comm may hold spaces


def chain(pid: int) -> list[tuple[int, str]]:
    """``pid`` and its ancestors up to PID 1, each with its command line."""
    out = []
    while pid > 1:
        out.append((pid, cmdline(pid)))
        pid = parent(pid)
    return out


def client_pids(port: int, timeout_s: float = 30) -> set[int]:
    """The processes holding a TCP connection to 127.0.0.1:``port`` (the client's side), read by ss."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["ss", "-Htnp", "state", "established", "dst", f"127.0.0.1:{port}"], capture_output=True, text=True
        ).stdout
        pids = {int(p) for p in re.findall(r"pid=(\d+)", listed)}
        if pids:
            return pids
        time.sleep(0.05)
    raise TimeoutError(f"no process held a connection to port {port} within {timeout_s} s")


def test_the_timed_requests_come_from_voxbench_run_started_in_tmux(bench_env):
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel")
    try:
        run_id = wait_for_state(bench_env, {"BENCHING"})
        wait_for_timed_requests(bench_env, run_id)
        port = bench_env["config"]["candidate"]["port"]
        (client,) = client_pids(port) - {os.getpid()}
        ancestry = chain(client)
        commands = [command for _, command in ancestry]
        # The process that streams the speech is the run itself, with the run's id...
        assert re.search(rf"(voxbench|bench_py\.cli) run {run_id} ", commands[0] + " "), commands
        # ...under the shell tmux started (tmux's server is an ancestor of every window's shell)...
        assert any(c.startswith("tmux") for c in commands), commands
        # ...and no Ansible anywhere between them: not the controller's, not a playbook on the host.
        assert not any("ansible" in c for c in commands), commands
        phases = subprocess.run(["pgrep", "-af", "phases.yml"], capture_output=True, text=True).stdout
        assert phases.strip() == "", phases
        assert wait_terminal(bench_env, run_id) == "DONE"
        assert process.wait(timeout=120) == 0, process.stdout.read()[-3000:] if process.stdout else ""
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)


def files_written(env: dict, run_id: str, timeout_s: float = 180) -> None:
    store = StateStore(env["config"]["paths"]["state_dir"])
    deadline = time.monotonic() + timeout_s
    while not store.load(run_id).changes.get("files_written"):
        assert time.monotonic() < deadline, f"run {run_id} wrote no closing documents within {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        # A kill of the run's own process is an operator abort, as a signal to its tmux shell is.
        (signal.SIGTERM, "operator abort: the run's process was sent SIGTERM"),
        # Nothing can catch SIGKILL (nor the OOM killer, nor a crash): a fresh process closes the run.
        (signal.SIGKILL, "the run's process ended in BENCHING without closing the run"),
    ],
    ids=["sigterm", "sigkill"],
)
def test_the_run_process_killed_mid_benching_still_tears_down(bench_env, docker_client, sent, expected):
    """Expected: ERROR_ABORTED from BENCHING with the reason saying how; the candidate's container
    removed, the co-tenant checked after, measurements.json written; the controller's bench fails."""
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel")
    try:
        run_id = wait_for_state(bench_env, {"BENCHING"})
        wait_for_timed_requests(bench_env, run_id)
        (pid,) = client_pids(bench_env["config"]["candidate"]["port"]) - {os.getpid()}
        assert f" run {run_id} " in cmdline(pid) + " "
        os.kill(pid, sent)
        assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
        files_written(bench_env, run_id)
        data = host_measurements(bench_env, run_id)
        assert expected in data["reason"], data["reason"]
        assert [h["to"] for h in data["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
        assert data["teardown"]["removal"]["verified"] is True
        assert data["teardown"]["postflight"]["ok"] is True
        assert bench_containers(docker_client) == []
        assert process.wait(timeout=120) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)
