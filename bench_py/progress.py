"""Live progress of a playbook run, drawn from ansible-runner events with rich.

The watcher's ``voxbench_state`` task reports the host's progress on every poll (``runner_retry``
events while it waits, ``runner_on_ok`` at the end): phase, side, condition, utterance n of N and
the last TTFA. On a terminal that becomes one live status line per host; elsewhere (CI, pipes,
``--json``) nothing is drawn.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


def describe(phase: dict[str, Any], state: str) -> str:
    """One line for a host's progress, e.g. ``BENCHING candidate cloned 3/10 TTFA 152 ms``."""
    name = phase.get("name") or state
    parts = [name]
    if phase.get("deferred"):
        parts.append(f"incumbent deferred: {phase['deferred']}")
    for key in ("side", "condition"):
        if phase.get(key):
            parts.append(str(phase[key]))
    if phase.get("utterance") and phase.get("of"):
        parts.append(f"{phase['utterance']}/{phase['of']}")
    if phase.get("load"):
        parts.append(str(phase["load"]))
    if isinstance(phase.get("ttfa_ms"), (int, float)):
        parts.append(f"TTFA {phase['ttfa_ms']:.0f} ms")
    return " ".join(parts)


class RunProgress:
    """An ansible-runner event handler that keeps a live line per host while a run goes on."""

    def __init__(self, console: Console | None = None, enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.lines: dict[str, str] = {}
        self.task = ""
        self._live: Live | None = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)
            self._live = None

    def _render(self) -> Text:
        text = Text()
        if self.task:
            text.append(f"{self.task}\n", style="dim")
        for host, line in sorted(self.lines.items()):
            text.append(f"{host:<16}", style="bold")
            text.append(f"{line}\n")
        return text

    def __call__(self, event: dict[str, Any]) -> None:
        data = event.get("event_data") or {}
        kind = event.get("event")
        if kind == "playbook_on_task_start":
            self.task = str(data.get("task", ""))
        elif kind in ("runner_retry", "runner_on_ok") and data.get("task_action") == "voxbench_state":
            res = data.get("res") or {}
            if "state" in res:
                self.lines[str(data.get("host"))] = describe(res.get("phase") or {}, str(res["state"]))
        else:
            return
        if self._live is not None:
            self._live.update(self._render())


def on_terminal() -> bool:
    return sys.stderr.isatty()
