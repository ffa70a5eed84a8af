"""Processes by pid, as /proc tells them: alive, and the same process that was recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


def process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot): tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not: it is gone but for its exit status) and, given the
    ``start`` recorded with it, is still that process and not another that reused the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return False
    return start is None or fields[19] == start


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` still runs (its leader may be gone; a
    group's id is not given to another process while one of its members lives)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # members owned by another user
        return True
    return True


def tmux_going_away(wait_s: float = 1.0) -> bool:
    """Inside a tmux pane: whether the tmux server ends within ``wait_s`` (a shutdown stopping the
    user's session, or ``tmux kill-server``: every pane gets its signal at once). False outside tmux,
    or when it lives on (a signal meant for this process alone)."""
    if "TMUX" not in os.environ:
        return False
    deadline = time.monotonic() + wait_s
    while True:
        try:
            alive = subprocess.run(["tmux", "has-session"], capture_output=True, timeout=2).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return True
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def session_ending() -> bool:
    """Whether this process's signal comes from its whole session ending (the host shutting down,
    its tmux killed) rather than from someone stopping this run."""
    return host_shutting_down() or tmux_going_away()


SYSTEMD_RUNTIME = Path("/run/systemd/system")  # present when systemd is the service manager


def host_shutting_down(systemd_runtime: Path = SYSTEMD_RUNTIME) -> bool:
    """Whether systemd is stopping this host (a reboot or a power-off under way). False where
    systemd is not the service manager or does not answer: nothing then says so."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not systemd_runtime.is_dir():
        return False
    try:
        said = subprocess.run([systemctl, "is-system-running"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return said.stdout.strip() == "stopping"
