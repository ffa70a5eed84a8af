"""Python API: the playbooks driven through ansible-runner, results read from runner events.

Results come from ``runner_on_ok`` events of the ``voxbench_results`` task (its
``ansible_facts``), never from ansible-runner's fact-cache reader, which is broken with
ansible-core >= 2.19.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The project whose playbooks the API runs (this checkout, or the installed copy).
PROJECT_DIR = Path(__file__).resolve().parent.parent


class VoxbenchError(RuntimeError):
    """A playbook failed; carries the host and task that failed and Ansible's message."""

    def __init__(self, message: str, host: str | None = None, task: str | None = None, rc: int | None = None):
        where = f"{host}: {task}: " if host or task else ""
        super().__init__(f"{where}{message}")
        self.host, self.task, self.message, self.rc = host, task, message, rc


class Cancelled(VoxbenchError):
    """The run was cancelled on the controller; the hosts were told to abort (operator abort)."""


@dataclass(frozen=True)
class BenchResult:
    run_id: str
    final_state: str
    verdict: str | None
    figures: dict[str, Any]
    summary: list[str]
    status: str
    rc: int
    artifacts_dir: str
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)


def _runner_env(project_dir: Path) -> dict[str, str]:
    # ansible-runner runs `ansible-playbook` from PATH: put this interpreter's bin/ first so the
    # venv's ansible runs even when the API is called without activating the venv.
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(project_dir / "ansible.cfg"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }


def _first_failure(events: list[dict[str, Any]]) -> VoxbenchError | None:
    for event in events:
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            data = event.get("event_data", {})
            if data.get("ignore_errors"):
                continue
            res = data.get("res", {})
            message = res.get("msg") or res.get("stderr") or "failed"
            return VoxbenchError(str(message), data.get("host"), data.get("task"))
    return None


def run_playbook(
    playbook: str,
    *,
    extra_vars: dict[str, Any],
    inventory: str | None = None,
    limit: str | None = None,
    project_dir: Path = PROJECT_DIR,
    private_data_dir: str | None = None,
    event_handler: Callable[[dict[str, Any]], Any] | None = None,
    cancel_callback: Callable[[], bool] | None = None,
    quiet: bool = True,
) -> tuple[Any, list[dict]]:
    """Run one of the project's playbooks; returns the runner and its events."""
    import ansible_runner

    private = private_data_dir or tempfile.mkdtemp(prefix="voxbench-runner-")
    Path(private).mkdir(parents=True, exist_ok=True, mode=0o700)
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> bool:
        events.append(event)
        if event_handler:
            event_handler(event)
        return True

    runner = ansible_runner.run(
        private_data_dir=private,
        project_dir=str(project_dir),
        playbook=playbook,
        inventory=inventory or str(project_dir / "inventory" / "local"),
        limit=limit,
        extravars=extra_vars,
        envvars=_runner_env(project_dir),
        quiet=quiet,
        event_handler=on_event,
        cancel_callback=cancel_callback,
    )
    return runner, events


def run_bench(
    gemma_mode: str,
    *,
    config: dict[str, Any] | None = None,
    extra_vars: dict[str, Any] | None = None,
    inventory: str | None = None,
    limit: str | None = None,
    project_dir: Path = PROJECT_DIR,
    private_data_dir: str | None = None,
    event_handler: Callable[[dict[str, Any]], Any] | None = None,
    cancel_callback: Callable[[], bool] | None = None,
) -> BenchResult:
    """Run ``bench.yml`` and return the collected figures; raises :class:`VoxbenchError` on failure."""
    variables = {"gemma_mode": gemma_mode, **(extra_vars or {})}
    if config:
        variables["voxbench_config"] = config
    runner, events = run_playbook(
        "bench.yml",
        extra_vars=variables,
        inventory=inventory,
        limit=limit,
        project_dir=project_dir,
        private_data_dir=private_data_dir,
        event_handler=event_handler,
        cancel_callback=cancel_callback,
    )
    if runner.status == "canceled":
        # Ctrl-C or an API cancel is an operator abort: the hosts tear their runs down.
        abort_runner, _ = run_playbook(
            "abort.yml", extra_vars=variables, inventory=inventory, limit=limit, project_dir=project_dir
        )
        raise Cancelled(
            f"cancelled on the controller; abort.yml ended {abort_runner.status} on the hosts", rc=abort_runner.rc
        )
    facts = None
    summary: list[str] = []
    for event in events:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task_action") in ("voxbench_results",):
            facts = data["res"]["ansible_facts"]["voxbench_results"]
            summary = data["res"].get("summary", [])
    failure = _first_failure(events)
    if facts is None:
        raise failure or VoxbenchError(
            f"bench.yml ended {runner.status} (rc {runner.rc}) without results", rc=runner.rc
        )
    return BenchResult(
        facts["run_id"],
        facts["final_state"],
        facts.get("verdict"),
        facts,
        summary,
        runner.status,
        runner.rc,
        str(Path(runner.config.artifact_dir)),
        events,
    )
