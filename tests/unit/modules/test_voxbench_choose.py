"""voxbench_choose: a required choice asked on the controller's terminal, and refused without one."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

from tests.helpers import ROOT
from tests.unit.modules.utils import action_plugin

ARGS = {"name": "gemma_mode", "choices": ["parallel", "pause-gemma"], "default": "parallel"}
PROMPT = b"gemma_mode? (parallel / pause-gemma) [parallel]: "


def test_without_a_terminal_it_fails_saying_what_to_pass(monkeypatch):
    with open(os.devnull) as devnull:  # stdin as under CI or ansible-runner
        monkeypatch.setattr(sys, "stdin", devnull)
        result = action_plugin("voxbench_choose", ARGS).run(task_vars={})
    assert result == {
        "failed": True,
        "msg": "gemma_mode is required and there is no terminal to ask on: "
        "pass -e gemma_mode=<choice> with parallel or pause-gemma",
    }


# Runs in a process whose controlling terminal is a pseudo-terminal this test types into.
ASK = """
import json, sys
from tests.unit.modules.utils import action_plugin
times, args = int(sys.argv[1]), json.loads(sys.argv[2])
for _ in range(times):
    print("RESULT " + json.dumps(action_plugin("voxbench_choose", args).run(task_vars={})), flush=True)
"""


def prompting(terminal: int) -> bool:
    """Whether the prompt has put the terminal in raw mode with echo (its last step before flushing
    what was typed ahead and reading)."""
    lflag = termios.tcgetattr(terminal)[3]
    return not lflag & termios.ICANON and bool(lflag & termios.ECHO)


def unread(terminal: int) -> int:
    """Bytes typed that nobody has read yet."""
    return struct.unpack("i", fcntl.ioctl(terminal, termios.FIONREAD, b"\0\0\0\0"))[0]


def answers_typed(*typed: bytes, timeout_s: float = 60.0) -> list[dict]:
    """Run the plugin once per answer on a real terminal, typing each answer when its prompt reads.

    The prompt flushes what was typed ahead: an answer typed in that instant is lost, and is typed
    again when nothing is left unread and no result came (a late duplicate is flushed by the next
    prompt in turn)."""
    primary, secondary = os.openpty()

    def take_the_terminal() -> None:  # the new session's controlling terminal, in the foreground
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    child = subprocess.Popen(
        [sys.executable, "-c", ASK, str(len(typed)), json.dumps(ARGS)],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    output, deadline = b"", time.monotonic() + timeout_s
    typed_at: float | None = None  # when the answer now asked for was typed
    answered = -1  # which answer that was
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if select.select([primary], [], [], 0.1)[0]:
                output += os.read(primary, 4096)
            done = len(re.findall(rb"RESULT ", output))
            if done == len(typed):
                break
            asked = output.count(PROMPT) == done + 1 and prompting(secondary)
            if typed_at is not None and done > answered:
                typed_at = None
            if asked and typed_at is None:
                time.sleep(0.2)
                os.write(primary, typed[done])
                typed_at, answered = time.monotonic(), done
            elif asked and unread(secondary) == 0 and time.monotonic() - typed_at > 2.0:
                typed_at = None  # flushed before it was read: type it again
        while select.select([primary], [], [], 0.1)[0]:
            output += os.read(primary, 4096)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        os.close(primary)
        os.close(secondary)
    # The terminal echoes what was typed (and clears the line) before each result.
    results = re.findall(rb"RESULT (\{[^\r\n]*\})", output)
    assert len(results) == len(typed), output.decode(errors="replace")
    return [json.loads(result) for result in results]


def test_on_a_terminal_the_answer_enter_for_the_default_and_a_wrong_answer_refused():
    chosen, default, wrong = answers_typed(b"pause-gemma\r", b"\r", b"serial\r")
    assert chosen == {"changed": False, "choice": "pause-gemma"}
    assert default == {"changed": False, "choice": "parallel"}
    assert wrong == {"failed": True, "msg": "gemma_mode must be parallel or pause-gemma, not 'serial'"}
