"""Python API: remote work (bench, setup, status, teardown, score) as the playbooks driven through
ansible-runner, results read from runner events; local work (report, extract) as direct calls.

Playbook results come from ``runner_on_ok`` events of the ``voxbench_results`` task (its
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
    cmdline: str | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
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
        cmdline=cmdline,
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


@dataclass(frozen=True)
class HostPlan:
    """One host's plan: read on the host (``facts_read``), or from the configuration alone when the
    host could not be reached (``unreachable`` says why)."""

    host: str
    plan: dict[str, Any]
    text: str
    facts_read: bool
    unreachable: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.plan.get("ok"))


def plan(
    gemma_mode: str = "parallel",
    *,
    config: dict[str, Any] | None = None,
    inventory: str | None = None,
    limit: str | None = None,
    project_dir: Path = PROJECT_DIR,
) -> list[HostPlan]:
    """``ansible-playbook bench.yml --check``: per host, what a run would do and every check it fails,
    starting nothing. A host that cannot be reached gets the plan its configuration alone gives."""
    variables: dict[str, Any] = {"gemma_mode": gemma_mode}
    if config:
        variables["voxbench_config"] = config
    runner, events = run_playbook(
        "bench.yml", extra_vars=variables, inventory=inventory, limit=limit, project_dir=project_dir, cmdline="--check"
    )
    static: dict[str, dict[str, Any]] = {}
    plans: dict[str, HostPlan] = {}
    for event in events:
        data = event.get("event_data", {})
        res, host = data.get("res") or {}, str(data.get("host"))
        action = data.get("task_action")
        if action == "voxbench_config" and "plan" in res:
            static[host] = res
        elif action == "voxbench_launch" and "plan" in res:
            plans[host] = HostPlan(host, res["plan"], res["plan_text"], True)
        elif action == "voxbench_launch" and event.get("event") == "runner_on_unreachable" and host in static:
            why = str(res.get("msg") or "unreachable").strip().splitlines()[0]
            plans[host] = HostPlan(host, static[host]["plan"], static[host]["plan_text"], False, why)
    if not plans:
        failure = _first_failure(events)
        raise failure or VoxbenchError(f"bench.yml --check ended {runner.status} (rc {runner.rc}) without a plan")
    return list(plans.values())


# -- The other verbs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlaybookResult:
    """A playbook's outcome: status, rc, and every ``ansible_facts`` a task returned, per host."""

    playbook: str
    status: str
    rc: int
    facts: dict[str, dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class ReportResult:
    run_id: str
    verdict: str
    verdict_detail: dict[str, Any]
    figures: dict[str, Any]
    report: str
    summary: list[str]


def _facts(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok":
            facts = (data.get("res") or {}).get("ansible_facts")
            if facts:
                out.setdefault(str(data.get("host")), {}).update(facts)
    return out


def _run(playbook: str, extra_vars: dict[str, Any], **kwargs: Any) -> PlaybookResult:
    runner, events = run_playbook(playbook, extra_vars=extra_vars, **kwargs)
    failure = _first_failure(events)
    if runner.status != "successful":
        raise failure or VoxbenchError(f"{playbook} ended {runner.status} (rc {runner.rc})", rc=runner.rc)
    return PlaybookResult(playbook, runner.status, runner.rc, _facts(events), events)


def setup(
    *,
    token_file: str | None = None,
    inventory: str | None = None,
    limit: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    event_handler: Callable[[dict[str, Any]], Any] | None = None,
) -> PlaybookResult:
    """Run ``setup.yml``: packages, runtime, token file, orphan sweep (idempotent).

    ``token_file`` is the path of the Hugging Face token on the controller; only the path travels
    through ansible-runner, never the token."""
    variables = dict(extra_vars or {})
    if token_file:
        variables["voxbench_token_source_file"] = token_file
    return _run("setup.yml", variables, inventory=inventory, limit=limit, event_handler=event_handler)


bench = run_bench


def report(run_dir: str | Path) -> ReportResult:
    """Rebuild the report and derive the verdict again from the run's files alone (what
    ``report.yml`` does, called here directly: a local verb needs no Ansible)."""
    from bench_py.judge.session import SessionError
    from bench_py.results.figures import ResultsError
    from bench_py.results.refresh import refresh
    from bench_py.results.report import ReportError
    from bench_py.run.measurements import MeasurementsError

    try:
        done = refresh(Path(run_dir).resolve())
    except (MeasurementsError, ResultsError, ReportError, SessionError) as error:
        raise VoxbenchError(str(error)) from None
    facts = done.facts
    return ReportResult(
        facts["run_id"], facts["verdict"], facts["verdict_detail"], facts, str(done.report), done.summary
    )


def status(
    *, inventory: str | None = None, limit: str | None = None, config: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Run ``status.yml``: per host, the run holding it and the newest runs."""
    variables = {"voxbench_config": config} if config else {}
    result = _run("status.yml", variables, inventory=inventory, limit=limit)
    return {host: facts["voxbench_status"] for host, facts in result.facts.items() if "voxbench_status" in facts}


def teardown(
    *,
    inventory: str | None = None,
    limit: str | None = None,
    reason: str = "operator abort through the API",
    config: dict[str, Any] | None = None,
) -> PlaybookResult:
    """Run ``abort.yml``: the run in progress on each host tears down and ends ERROR_ABORTED."""
    variables: dict[str, Any] = {"voxbench_abort_reason": reason}
    if config:
        variables["voxbench_config"] = config
    return _run("abort.yml", variables, inventory=inventory, limit=limit)


def score(
    run_dir: str | Path,
    *,
    listeners: list[str] | None = None,
    on_url: Callable[[str], Any] | None = None,
    on_links: Callable[[dict[str, str]], Any] | None = None,
    timeout_s: int = 86400,
    extra_vars: dict[str, Any] | None = None,
    private_data_dir: str | None = None,
) -> PlaybookResult:
    """Run ``score.yml``: register ``listeners`` (default: one named after you), serve the blind
    listening page, call ``on_url`` with its address and ``on_links`` with each listener's personal
    link (listener name -> URL with their key) as soon as it is up, wait for the reveal (every
    listener finished, or ``voxbench score RUN_DIR --close``), then commit on the benchmark branch."""
    import base64
    import json

    def handler(event: dict[str, Any]) -> None:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task_action") in ("ansible.builtin.slurp", "slurp"):
            content = (data.get("res") or {}).get("content")
            server = json.loads(base64.b64decode(content)) if content else {}
            if "url" not in server:
                return  # the session file, read first to see whether it was revealed
            if on_url:
                on_url(server["url"])
            if on_links:
                on_links(server.get("links") or {})

    variables: dict[str, Any] = {
        "run_dir": str(Path(run_dir).resolve()),
        "voxbench_score_timeout_s": timeout_s,
        **(extra_vars or {}),
    }
    if listeners:
        variables["voxbench_score_listeners"] = list(listeners)
    return _run("score.yml", variables, event_handler=handler, private_data_dir=private_data_dir)


def attach_command(host: str | None, inventory: str, session: str = "voxbench") -> list[str]:
    """The command that attaches to a host's tmux session: local for a local connection, else ssh -t.
    ``host`` may be omitted when the inventory's ``gpu_hosts`` has exactly one host."""
    import json
    import subprocess

    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", inventory, "--list"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ValueError(f"cannot read the inventory {inventory}: {result.stderr.strip()[-200:]}")
    data = json.loads(result.stdout)
    hosts = data.get("gpu_hosts", {}).get("hosts", [])
    if host is None:
        if len(hosts) != 1:
            raise ValueError(f"name the host to attach to: one of {', '.join(hosts) or '(none in gpu_hosts)'}")
        host = hosts[0]
    hostvars = data.get("_meta", {}).get("hostvars", {}).get(host)
    if hostvars is None:
        raise ValueError(f"{host} is not in the inventory {inventory}")
    tmux = ["tmux", "attach-session", "-t", session]
    if hostvars.get("ansible_connection") == "local":
        return tmux
    target = hostvars.get("ansible_host", host)
    if hostvars.get("ansible_user"):
        target = f"{hostvars['ansible_user']}@{target}"
    ssh = ["ssh", "-t"]
    if hostvars.get("ansible_port"):
        ssh += ["-p", str(hostvars["ansible_port"])]
    if hostvars.get("ansible_ssh_private_key_file"):
        ssh += ["-i", str(hostvars["ansible_ssh_private_key_file"])]
    return [*ssh, target, *tmux]


def extract(
    film: str | Path,
    subtitles: str | Path,
    *,
    speaker: str | None = None,
    example: str | Path | None = None,
    cluster: int | None = None,
    out_dir: str | Path | None = None,
    top: int | None = None,
    min_seconds: float | None = None,
    confirm_rank: int | None = None,
    reference_name: str | None = None,
    references_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Phase A0 (what ``extract.yml`` does, called here directly): the ranked clips (or the
    clusters to listen to), and the allowlist entry when ``confirm_rank`` confirmed one. Defaults as
    the playbook's: ``runs/extract`` and ``voice-references`` in the project, the top 5, 5 s."""
    from bench_py.voice import clips, confirm, references, vtt

    try:
        return confirm.extract_and_confirm(
            Path(film).resolve(),
            Path(subtitles).resolve(),
            Path(out_dir).resolve() if out_dir else PROJECT_DIR / "runs" / "extract",
            speaker=speaker,
            example=Path(example).resolve() if example else None,
            cluster=cluster,
            top=top if top is not None else 5,
            min_seconds=min_seconds if min_seconds is not None else 5.0,
            confirm_rank=confirm_rank,
            reference_name=reference_name,
            references_dir=Path(references_dir).resolve() if references_dir else PROJECT_DIR / "voice-references",
        )
    except (clips.ExtractError, vtt.VttError, references.ReferenceError) as error:
        raise VoxbenchError(str(error)) from None
