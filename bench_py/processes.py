"""Processes by pid, as /proc tells them: alive, and the same process that was recorded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


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


#: Every process a run starts on its own (the 2B engine, each 2D command) carries the run's id in
#: this variable: what is left of a run is found by it, whatever its pid, group or parent became.
RUN_ID_VARIABLE = "VOXBENCH_RUN_ID"


def _environment_names(pid: int, run_id: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return False
    return f"{RUN_ID_VARIABLE}={run_id}".encode() in environ.split(b"\0")


def _lineage(pid: int) -> set[int]:
    """``pid`` and its ancestors: the run's own process and the shell that runs it are not leftovers."""
    chain: set[int] = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def run_processes(run_id: str) -> list[dict[str, Any]]:
    """The live processes carrying ``run_id`` in their environment, this process and its ancestors
    left out: pid, start time and command line of each."""
    own = _lineage(os.getpid())
    found: list[dict[str, Any]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        pid = int(entry.name)
        if not _environment_names(pid, run_id) or not pid_alive(pid):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        command = " ".join(a.decode(errors="replace") for a in argv if a)[:300]
        found.append({"pid": pid, "pid_start": process_start(pid), "command": command, "signals": []})
    return found


def _signal_if_still_ours(pid: int, start: str | None, run_id: str, signum: int) -> bool:
    """Signal ``pid`` through a pidfd, only while it is the process found (same start time, still
    carrying the run's id): a pid another process reused is never signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if process_start(pid) != start or not _environment_names(pid, run_id):
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def stop_run_processes(run_id: str, grace_s: float) -> dict[str, Any]:
    """Every process still carrying the run's id: SIGTERM → ``grace_s`` → SIGKILL → verify.

    ``found`` is what was left when teardown (or recovery) came to it, with the signals each was
    sent; ``remaining`` what runs after them; ``verified`` holds only when nothing of the run remains."""
    found = run_processes(run_id)
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        alive = [p for p in found if pid_alive(p["pid"], p["pid_start"])]
        if not alive:
            break
        for process in alive:
            if _signal_if_still_ours(process["pid"], process["pid_start"], run_id, signum):
                process["signals"].append(signal.Signals(signum).name)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(pid_alive(p["pid"], p["pid_start"]) for p in alive):
            time.sleep(0.1)
    remaining = run_processes(run_id)
    return {"found": found, "remaining": remaining, "verified": not remaining}
