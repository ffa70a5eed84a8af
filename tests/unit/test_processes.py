"""One pid_alive for the whole of voxbench: a zombie is gone, a reused pid is another process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench_py.processes import pid_alive, process_start


def test_a_running_process_is_alive_and_is_the_one_recorded():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = process_start(child.pid)
        assert start and pid_alive(child.pid) and pid_alive(child.pid, start)
        assert not pid_alive(child.pid, str(int(start) + 1))  # the pid, but not the process recorded
    finally:
        child.kill()
        child.wait()


def test_a_zombie_and_a_reaped_process_are_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, not yet reaped: a zombie
        state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.02)
    assert state == "Z" and not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid) and process_start(child.pid) is None


def test_a_recorded_pid_another_process_reused_is_not_signalled():
    """Recovery stops a 2B engine by the pid its run recorded. A process that runs under that pid
    now but started at another time reused it: it is left alone, and the record says so."""
    from bench_py.engines.paths import stop_process_group
    from bench_py.processes import pid_alive, process_start

    innocent = subprocess.Popen(["sleep", "60"], start_new_session=True)  # its own process group
    try:
        real_start = process_start(innocent.pid)
        assert real_start is not None
        recorded_start = str(int(real_start) - 1)  # the engine that held this pid started earlier
        result = stop_process_group(innocent.pid, grace_s=1, start=recorded_start)
        assert result == {"pid": innocent.pid, "signals": [], "verified": True, "pid_reused": True}
        assert innocent.poll() is None and pid_alive(innocent.pid, real_start)  # untouched
        # The same pid recorded with its own start time is the engine: it is stopped.
        stopped = stop_process_group(innocent.pid, grace_s=1, start=real_start)
        assert stopped["signals"] == ["SIGTERM"] and stopped["verified"] is True
        assert innocent.wait(timeout=5) == -15
    finally:
        innocent.kill()
        innocent.wait()


def test_a_group_outlives_its_leader():
    """The run's process is in the group its tmux shell leads: it may still run after the shell is
    killed, and recovery must not start a second teardown beside it."""
    from bench_py.processes import group_alive, pid_alive

    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        time.sleep(0.3)
        leader.kill()  # the shell goes; its background child stays in the group
        leader.wait()
        assert not pid_alive(leader.pid) and group_alive(leader.pid)
    finally:
        import os
        import signal

        os.killpg(leader.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while group_alive(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(leader.pid)


def test_only_a_tmux_server_that_ends_counts_as_the_session_ending(tmp_path, monkeypatch):
    """Inside a pane whose tmux lives on, a signal is for the run alone; outside tmux nothing is said."""
    import os
    import shlex

    from bench_py.processes import tmux_going_away

    monkeypatch.delenv("TMUX", raising=False)
    assert tmux_going_away(0.2) is False
    socket, out = tmp_path / "tmux.sock", tmp_path / "said"
    check = "from bench_py.processes import tmux_going_away; print(tmux_going_away(0.5))"
    python = shlex.quote(sys.executable)
    command = f"cd {shlex.quote(os.getcwd())} && {python} -c {shlex.quote(check)} > {out}; sleep 30"
    subprocess.run(["tmux", "-S", str(socket), "new-session", "-d", "-s", "t", command], check=True)
    try:
        deadline = time.monotonic() + 20
        while not (out.is_file() and out.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.read_text().strip() == "False"  # the server lived on through the check
    finally:
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False)


def test_a_process_left_with_the_runs_id_is_found_stopped_and_verified_gone():
    """Teardown and recovery stop whatever still carries the run's id, wherever it went (its own
    session here, as a child that left its engine's group); another run's process is left alone."""
    import os

    from bench_py.processes import RUN_ID_VARIABLE, run_processes, stop_run_processes

    run_id = f"unit-{os.getpid()}-{time.monotonic_ns()}"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env={**os.environ, RUN_ID_VARIABLE: run_id}, start_new_session=True)
    other = subprocess.Popen(sleep, env={**os.environ, RUN_ID_VARIABLE: run_id + "-other"}, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not run_processes(run_id) and time.monotonic() < deadline:
            time.sleep(0.02)  # until the child's environment is readable
        assert [p["pid"] for p in run_processes(run_id)] == [ours.pid]
        result = stop_run_processes(run_id, grace_s=2)
        assert result["verified"] and result["remaining"] == []
        ((found,),) = [result["found"]]
        assert found["pid"] == ours.pid and found["signals"] == ["SIGTERM"] and "time.sleep" in found["command"]
        assert ours.wait(timeout=5) == -15
        assert other.poll() is None  # another run's process
        assert stop_run_processes(run_id, grace_s=2) == {"found": [], "remaining": [], "verified": True}
    finally:
        for child in (ours, other):
            child.kill()
            child.wait()


def test_the_process_asking_and_its_parents_are_not_leftovers():
    """The run's own process carries its id too when a test or a shell sets it: it is never its own leftover."""
    import os

    from bench_py.processes import RUN_ID_VARIABLE

    run_id = f"unit-self-{os.getpid()}"
    code = "from bench_py.processes import run_processes; import sys; print(run_processes(sys.argv[1]))"
    shell = f'{sys.executable} -c "$0" "$1"; exit $?'  # no exec: the shell stays, the asker's parent
    result = subprocess.run(
        ["sh", "-c", shell, code, run_id],
        env={**os.environ, RUN_ID_VARIABLE: run_id},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
