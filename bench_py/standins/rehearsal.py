"""``make rehearsal``: the production route on this machine, before anyone touches a real titan.

Two systemd + sshd test hosts named ``titan`` and ``panda`` on a network of their own. panda
serves the Chatterbox stand-in with panda's published API on port 8772; titan serves "Gemma"
(the co-tenant stand-in with Gemma's latency shape) on 8003 in a long-lived container that
pause-gemma stops and starts. The inventory is ``inventory/titan.example`` changed only in keys on
the written allow-list (:mod:`bench_py.standins.rehearsal_inventory`), with host keys checked
against a known_hosts file written here. ``setup.yml`` converges titan from the bundle (nothing of
the project is mounted into it) and prefetches the model's files from a gated Hub stand-in; then
``bench.yml`` runs twice: ``parallel`` against vLLM-Omni 0.30's behaviour and ``pause-gemma``
against 0.18's, with the open weights — so the cloned condition is taken by the preset the
sweep on titan finds closest.

titan's engines run on this machine's Docker daemon (the test host shares it), so the files it
hands them — its secrets and its Hugging Face cache — are this machine's directories mounted at
the same paths (``/var/lib/voxbench/secrets``, ``/home/bench/.cache/huggingface``); the rehearsal
creates them, marks them, and removes only what it marked.

:mod:`bench_py.standins.rehearsal_hosts` brings the hosts and their stand-ins up and down;
:mod:`bench_py.standins.rehearsal_playbooks` writes the inventory, drives the playbooks and checks
what they left; :func:`main` walks those steps, once per machine at a time, and writes the report.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import docker

from bench_py.standins.rehearsal_hosts import SAME_PATHS, RehearsalError, Say
from bench_py.standins.rehearsal_playbooks import RUNS, Rehearsal, titan_problems

LOCK = Path("/run/lock/voxbench-rehearsal.lock")


def _one_at_a_time(say: Say) -> Any:
    """The rehearsal's names and directories are fixed: one rehearsal per Docker host at a time."""
    import fcntl

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = LOCK.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise RehearsalError(f"another rehearsal is running on this machine ({handle.read().strip()})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the teardown in main's finally still runs


def main(project: Path, workdir: Path, say: Say = print) -> int:
    """``make rehearsal``: every step of :class:`Rehearsal`, timed; exit 0 when both runs end as production's route
    should. What it saw goes to ``<workdir>/rehearsal.json`` (the test reads its facts there)."""
    from bench_py.standins.images import build_standins

    if os.geteuid() != 0:
        say(
            f"make rehearsal needs root: it makes {' and '.join(SAME_PATHS)} on this machine (titan's engines run "
            "on its Docker daemon) for the test hosts' bench user; run it as root or with sudo"
        )
        return 2
    started = time.monotonic()
    failures: list[str] = []
    report: dict[str, Any] = {"runs": []}
    try:
        lock = _one_at_a_time(say)
    except RehearsalError as error:
        say(str(error))
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupted)
    rehearsal = Rehearsal(docker.from_env(), project, workdir, say)
    try:
        images = build_standins(rehearsal.client, progress=say)
        rehearsal.start_fleet()
        rehearsal.start_production(images)
        report["inventory_diff"] = [list(row) for row in rehearsal.write_inventory()]
        say("setup.yml on titan (bundle, token, prefetch) ...")
        setup_started = time.monotonic()
        rehearsal.setup()
        report["setup_s"] = round(time.monotonic() - setup_started, 1)
        report["titan"] = rehearsal.titan_facts()
        failures += titan_problems(report["titan"])
        report["host_key_check"] = rehearsal.spoofed_host_key()
        if not report["host_key_check"]["refused"]:
            failures.append("titan answered with another host's keys in known_hosts: host keys are not checked")
        for gemma_mode, release in RUNS:
            say(f"bench.yml -e gemma_mode={gemma_mode} against vLLM-Omni {release} ...")
            outcome = rehearsal.bench(gemma_mode, release)
            verdict_file = outcome.run_dir / "verdict.json" if outcome.run_dir else None
            verdict = (
                json.loads(verdict_file.read_text())["verdict"] if verdict_file and verdict_file.is_file() else "-"
            )
            say(f"  {outcome.measurements.get('final_state')} in {outcome.seconds:.0f} s, verdict {verdict}")
            report["runs"].append(
                {
                    "gemma_mode": gemma_mode,
                    "release": release,
                    "returncode": outcome.returncode,
                    "seconds": round(outcome.seconds, 1),
                    "run_dir": str(outcome.run_dir) if outcome.run_dir else None,
                    "problems": outcome.problems,
                }
            )
            failures += [f"{gemma_mode}/{release}: {problem}" for problem in outcome.problems]
            if outcome.problems:
                say(outcome.output[-3000:])
        report["gemma_after"] = rehearsal.gemma_answers()
        if not report["gemma_after"]["answers"]:
            failures.append(f"Gemma does not answer after the runs: {report['gemma_after']}")
        report["token_found_in"] = rehearsal.token_leaks()
        if report["token_found_in"]:
            failures.append(f"the Hugging Face token was found in: {report['token_found_in']}")
    except (Exception, KeyboardInterrupt) as error:  # whatever ends it, the report says so and teardown runs
        failures.append(f"{type(error).__name__}: {error}")
    finally:
        rehearsal.teardown()
        signal.signal(signal.SIGTERM, previous)
        lock.close()
    seconds = time.monotonic() - started
    report.update(seconds=round(seconds, 1), failures=failures, passed=not failures, extra_vars=rehearsal.extra_vars)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rehearsal.json").write_text(json.dumps(report, indent=1) + "\n")
    say(f"rehearsal {'passed' if not failures else 'FAILED'} in {seconds:.0f} s (report: {workdir / 'rehearsal.json'})")
    for failure in failures:
        say(f"  {failure}")
    return 0 if not failures else 1
