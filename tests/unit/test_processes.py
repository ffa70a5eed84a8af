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
