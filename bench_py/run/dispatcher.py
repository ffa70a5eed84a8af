"""The host-side dispatcher: start a run (``voxbench run``) in tmux, or find the run in progress.

The run goes on on the host, inside the tmux session ``voxbench``, so it survives the
controller losing its SSH connection; the host does its own teardown.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from bench_py.config.model import Config
from bench_py.files import atomic_write_json
from bench_py.processes import process_start
from bench_py.run.space import is_disk_full
from bench_py.run.state import HostLockedError, StateStore, boot_id, boot_marker, make_run_id


class LaunchError(RuntimeError):
    """The run could not be started; the message says what to do."""


def run_command(
    project_dir: Path, python: Path, state_dir: Path, run_id: str, log: Path, cpus: list[int] | None = None
) -> str:
    """The shell command tmux runs: ``voxbench run RUN_ID`` with this host's interpreter.

    With ``cpus`` the whole run (every phase and the benchmarking client) stays on those CPUs.
    """
    script = python.parent / "voxbench"
    voxbench = [str(python), str(script)] if script.is_file() else [str(python), "-m", "bench_py.cli"]
    pin = ["taskset", "-c", ",".join(str(c) for c in cpus)] if cpus else []
    where = ["--state-dir", str(state_dir), "--project-dir", str(project_dir)]
    env = f"PYTHONUNBUFFERED=1 PATH={shlex.quote(str(python.parent))}:$PATH"
    to_log = f">> {shlex.quote(str(log))} 2>&1"
    run = f"cd {shlex.quote(str(project_dir))} && {env} {shlex.join([*pin, *voxbench, 'run', run_id, *where])} {to_log}"
    # SIGTERM, SIGINT (Ctrl-C in the tmux window) or SIGHUP to this shell is an operator abort:
    # it raises the abort flag, the run tears down to ERROR_ABORTED, and the shell waits for it.
    # The run goes in the background so the shell's trap runs at once (a shell defers traps while
    # a foreground command runs; background jobs ignore Ctrl-C).
    flag = shlex.join(
        [str(python), "-m", "bench_py.run.abort", str(state_dir / "runs" / run_id), "--by", "operator", "--reason",
         "operator abort: the host-side run was sent a signal"]
    )  # fmt: skip
    on_signal = shlex.quote(f"cd {shlex.quote(str(project_dir))} && {flag}; wait $child")
    # Once the run's process is gone, however it went (killed, out of memory, crashed), a fresh one
    # closes the run if it did not close itself: teardown, the co-tenant back, the documents. Only
    # while tmux itself lives: a tmux server that went too (a shutdown stopping the session, tmux
    # killed) leaves the run to the recovery at boot, at the next bench.yml or at voxbench cleanup.
    close = shlex.join([*voxbench, "run", run_id, *where, "--close-unfinished"])
    gone = "while kill -0 $child 2>/dev/null; do wait $child; done"  # a trapped signal ends `wait` early
    after = f"{gone}; tmux has-session 2>/dev/null && cd {shlex.quote(str(project_dir))} && {env} {close} {to_log}"
    return f"( {run} ) & child=$!; trap {on_signal} TERM INT HUP; wait $child; {after}"


def _tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False)


def start_in_tmux(session: str, window: str, command: str) -> int:
    """Run ``command`` in a new window of ``session`` (created if needed); returns the pane's pid."""
    if shutil.which("tmux") is None:
        raise LaunchError("tmux is not installed on the host; run setup.yml (or apt-get install tmux)")
    exists = _tmux("has-session", "-t", session).returncode == 0
    if exists:
        result = _tmux("new-window", "-d", "-P", "-F", "#{pane_pid}", "-t", f"{session}:", "-n", window, command)
    else:
        result = _tmux("new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", session, "-n", window, command)
    if result.returncode != 0:
        raise LaunchError(f"tmux could not start the run: {result.stderr.strip()}")
    return int(result.stdout.strip())


def launch(
    config_data: dict[str, Any],
    project_dir: str,
    python: str,
    *,
    new_run: bool = False,
    tmux_session: str = "voxbench",
    dry_run: bool = False,
) -> dict[str, Any]:
    config = Config.model_validate(config_data)
    store = StateStore(config.paths.state_dir)
    holder = store.holder()
    recovered: list[dict[str, Any]] = []
    if holder is not None and store.in_progress(holder):
        state = store.load(holder)
        if store.dispatcher_alive(state) is False or not store.same_boot(state):
            # Its dispatcher is gone (tmux killed, host rebooted): close it and undo what it changed.
            import docker.errors

            from bench_py.engines.docker_client import docker_client
            from bench_py.hosts.cleanup import recover

            try:
                recovered = recover(store, docker_client(config.preflight.docker_url), dry_run=dry_run)
            except docker.errors.DockerException as error:
                raise LaunchError(
                    f"run {holder}'s dispatcher is gone and its containers must be removed first, but Docker does "
                    f"not answer ({error}); start Docker and run again"
                ) from None
        elif new_run:
            raise LaunchError(
                f"run {holder} holds this host; follow it with `ssh <host> -t tmux attach -t {tmux_session}` "
                "or run bench.yml again without new_run=true to attach and collect it"
            )
        else:
            return {"run_id": holder, "attached": True, "run_dir": str(store.run_dir(holder)), "recovered": []}
    if not new_run and not recovered:
        uncollected = store.latest_uncollected()
        if uncollected:  # a run whose controller was lost has ended meanwhile: collect it
            return {
                "run_id": uncollected,
                "attached": True,
                "run_dir": str(store.run_dir(uncollected)),
                "recovered": [],
            }
    run_id = make_run_id(config.candidate.name, socket.gethostname())
    run_dir = store.run_dir(run_id)
    if dry_run:
        return {"run_id": run_id, "attached": False, "run_dir": str(run_dir), "recovered": recovered}
    try:
        store.create(run_id)
        atomic_write_json(run_dir / "config.json", config.model_dump(mode="json"))
    except HostLockedError as error:  # lost a race with another launcher
        raise LaunchError(str(error)) from None
    except OSError as error:
        if not is_disk_full(error):
            raise
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing started: leave no run and no lock behind
        if store.holder() == run_id:
            store.lock_path.unlink(missing_ok=True)
        raise LaunchError(
            f"the disk under {store.root} is full ({error.strerror}); free some space and run again"
        ) from None
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    project, interpreter = Path(project_dir).resolve(), Path(python)
    command = run_command(
        project, interpreter, store.root, run_id, run_dir / "logs" / "run.log", config.bench.client_cpus
    )
    pid = start_in_tmux(tmux_session, run_id, command)
    store.update(
        run_id,
        changes={
            "dispatcher": {
                "tmux_session": tmux_session,
                "window": run_id,
                "project_dir": str(project),  # where a closing step elsewhere finds the run's project
                "pid": pid,
                "pid_start": process_start(pid),
                "host_boot_id": boot_id(),
                "host_boot_marker": boot_marker(),  # None where /run/voxbench cannot be kept
            }
        },
    )
    return {"run_id": run_id, "attached": False, "run_dir": str(run_dir), "pid": pid, "recovered": recovered}
