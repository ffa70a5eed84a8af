"""Verbs that drive the GPU hosts: bench, setup, status, teardown, attach, plan, prefetch, cleanup, baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench_py.cli.options import config_overrides, extra_variables
from bench_py.cli.root import main

#: Exit codes of ``voxbench bench`` (documented in docs/cli.md).
EXIT_DONE, EXIT_FAILED, EXIT_ABORTED, EXIT_CANCELLED = 0, 1, 3, 130


@main.command("bench")
@click.option(
    "--gemma-mode",
    type=click.Choice(["parallel", "pause-gemma"]),
    required=True,
    help="Keep the co-tenant serving (parallel) or stop it during the run (pause-gemma).",
)
@click.option("--inventory", "-i", help="Inventory path (default: inventory/local, the embedded default).")
@click.option("--limit", "-l", help="Only these hosts.")
@click.option("--profile", type=click.Choice(["full", "fast"]), help="Configuration profile.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of configuration overrides (merged like voxbench_config).",
)
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="KEY=VALUE",
    help="An extra variable for the playbooks (VALUE read as YAML); repeatable.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run's figures as JSON (docs/schemas/cli-bench.v0.json)."
)
def bench_command(
    gemma_mode: str,
    inventory: str | None,
    limit: str | None,
    profile: str | None,
    config_file: str | None,
    variables: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run bench.yml (launcher, watcher, collector) and print the run's summary."""
    import json
    import signal

    from bench_py.api import Cancelled, VoxbenchError, run_bench

    interrupted: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        # Ctrl-C (or SIGTERM) is an operator abort: stop following, then tell the hosts to abort.
        interrupted.append(signum)

    from bench_py.progress import RunProgress

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        with RunProgress(enabled=None if not as_json else False) as progress:
            result = run_bench(
                gemma_mode,
                config=config_overrides(config_file, profile),
                extra_vars=extra_variables(variables),
                inventory=inventory,
                limit=limit,
                cancel_callback=lambda: bool(interrupted),
                event_handler=progress,
            )
    except Cancelled as error:
        click.echo(f"voxbench: {error}", err=True)
        sys.exit(EXIT_CANCELLED)
    except VoxbenchError as error:
        click.echo(f"voxbench: {error}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        output = {
            "schema": "voxbench/cli-bench/v0",
            "run_id": result.run_id,
            "final_state": result.final_state,
            "verdict": result.verdict,
            "figures": result.figures,
        }
        click.echo(json.dumps(output, indent=2, sort_keys=True))
    else:
        click.echo("\n".join(result.summary))
    sys.exit(EXIT_DONE if result.final_state == "DONE" else EXIT_ABORTED)


@main.command("setup")
@click.option("--inventory", "-i", help="Inventory path (default: inventory/local, the embedded default).")
@click.option("--limit", "-l", help="Only these hosts.")
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="The Hugging Face token on this machine (copied to each host as a 0600 file; only its path is passed).",
)
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE", help="An extra variable; repeatable.")
def setup_command(inventory: str | None, limit: str | None, token_file: str | None, variables: tuple[str, ...]) -> None:
    """Run setup.yml: prepare each GPU host (idempotent: a second run changes nothing)."""
    from bench_py.api import VoxbenchError, setup
    from bench_py.progress import RunProgress

    try:
        with RunProgress() as progress:
            result = setup(
                token_file=token_file,
                inventory=inventory,
                limit=limit,
                extra_vars=extra_variables(variables),
                event_handler=progress,
            )
    except VoxbenchError as error:
        click.echo(f"voxbench: {error}", err=True)
        sys.exit(EXIT_FAILED)
    hosts = sorted(h for h in result.facts if h != "localhost") or sorted(result.facts)
    click.echo(f"setup {result.status} on {', '.join(hosts) or 'no host'}")


@main.command("status")
@click.option("--inventory", "-i", help="Inventory path (default: inventory/local, the embedded default).")
@click.option("--limit", "-l", help="Only these hosts.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (docs/schemas/cli-status.v0.json).")
def status_command(inventory: str | None, limit: str | None, as_json: bool) -> None:
    """What is running on each GPU host, and its newest runs."""
    import json

    from bench_py.api import VoxbenchError, status

    try:
        hosts = status(inventory=inventory, limit=limit)
    except VoxbenchError as error:
        click.echo(f"voxbench: {error}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps({"schema": "voxbench/cli-status/v0", "hosts": hosts}, indent=2, sort_keys=True))
        return
    from bench_py.progress import describe

    for host, info in sorted(hosts.items()):
        click.echo(f"{host}: {'running ' + info['holder'] if info['holder'] else 'no run in progress'}")
        for run in info["runs"]:
            extra = describe(run["phase"], run["state"]) if not run["terminal"] else (run["reason"] or "")
            collected = "" if run["collected"] or not run["terminal"] else "  (not collected: bench.yml fetches it)"
            click.echo(f"  {run['run_id']}  {run['state']:<13} {extra}{collected}")


@main.command("teardown")
@click.option("--inventory", "-i", help="Inventory path (default: inventory/local, the embedded default).")
@click.option("--limit", "-l", help="Only these hosts.")
@click.option("--reason", default="operator abort (voxbench teardown)", show_default=True)
def teardown_command(inventory: str | None, limit: str | None, reason: str) -> None:
    """Abort the run in progress on each host: it tears down, restores the co-tenant, ends ERROR_ABORTED."""
    from bench_py.api import VoxbenchError, teardown

    try:
        teardown(inventory=inventory, limit=limit, reason=reason)
    except VoxbenchError as error:
        click.echo(f"voxbench: {error}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo("the runs in progress were told to abort and have torn down")


@main.command("attach")
@click.argument("host", required=False)
@click.option("--inventory", "-i", help="Inventory path (default: inventory/local, the embedded default).")
@click.option("--session", default="voxbench", show_default=True, help="The tmux session runs live in.")
@click.option("--print", "print_only", is_flag=True, help="Print the command instead of running it.")
def attach_command(host: str | None, inventory: str | None, session: str, print_only: bool) -> None:
    """Attach to the host's tmux session where the run's phases execute (detach: Ctrl-b d)."""
    import os
    import shlex

    from bench_py.api import PROJECT_DIR
    from bench_py.api import attach_command as build

    try:
        argv = build(host, inventory or str(PROJECT_DIR / "inventory" / "local"), session)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if print_only:
        click.echo(shlex.join(argv))
        return
    os.execvp(argv[0], argv)


@main.command("plan")
@click.option("--inventory", "-i", help="Inventory path (default: inventory/local, the embedded default).")
@click.option("--limit", help="Only these hosts (Ansible's --limit).")
@click.option("--gemma-mode", type=click.Choice(["parallel", "pause-gemma"]), default="parallel", show_default=True)
@click.option("--config", "config_file", type=click.Path(exists=True), help="YAML of configuration overrides.")
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
def plan_command(
    inventory: str | None, limit: str | None, gemma_mode: str, config_file: str | None, as_json: bool
) -> None:
    """What a run would do on each host, and every check it fails, starting nothing
    (`ansible-playbook bench.yml --check`). Exit 0 when every plan passes, 1 otherwise."""
    import json

    from bench_py.api import VoxbenchError
    from bench_py.api import plan as make_plans

    try:
        plans = make_plans(gemma_mode, config=config_overrides(config_file, None), inventory=inventory, limit=limit)
    except VoxbenchError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(
            json.dumps(
                [{"host": p.host, "facts_read": p.facts_read, "unreachable": p.unreachable, **p.plan} for p in plans],
                indent=2,
            )
        )
    else:
        for host_plan in plans:
            if host_plan.unreachable:
                click.echo(
                    f"{host_plan.host}: not reached ({host_plan.unreachable}); what its configuration alone says:"
                )
            click.echo(host_plan.text)
    sys.exit(0 if all(p.ok for p in plans) else 1)


@main.command("prefetch")
@click.option("--model", help="The model to fetch (default: candidate.model).")
@click.option("--cache-dir", help="The Hugging Face cache to fill (default: candidate.hf_cache_dir).")
@click.option("--token-file", help="The Hugging Face token file, mode 0600 (default: paths.token_file).")
@click.option("--endpoint", help="A Hugging Face Hub mirror (default: huggingface.co).")
@click.option("--config", "config_file", type=click.Path(exists=True), help="YAML of configuration overrides.")
def prefetch_command(
    model: str | None, cache_dir: str | None, token_file: str | None, endpoint: str | None, config_file: str | None
) -> None:
    """Put the candidate's weights into this host's Hugging Face cache before any run, so the first
    start neither downloads them under the co-tenant gate nor needs a long ready timeout."""
    from bench_py.config.model import ConfigError, load
    from bench_py.hosts.prefetch import PrefetchError, prefetch

    try:
        config = load({"gemma_mode": "parallel", **(config_overrides(config_file, None) or {})})
    except ConfigError as error:
        raise click.ClickException(f"invalid voxbench configuration: {error}") from None
    cache = cache_dir or config.candidate.hf_cache_dir
    if not cache:
        raise click.ClickException("no Hugging Face cache: pass --cache-dir or set candidate.hf_cache_dir")
    try:
        result = prefetch(
            model or config.candidate.model,
            cache,
            token_file or config.paths.token_file,
            endpoint=endpoint,
            progress=lambda line: click.echo(line, err=True),
        )
    except PrefetchError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{result['model']}: {len(result['files'])} files, {result['bytes'] / 1e9:.2f} GB in {result['cache_dir']} "
        f"({len(result['downloaded'])} downloaded now, {result['seconds']:.1f} s)"
    )


@main.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Show what would be removed or closed; change nothing.")
@click.option(
    "--max-age-hours",
    type=float,
    default=4.0,
    show_default=True,
    help="Remove bench containers older than this (or past their expiry label).",
)
@click.option("--host", "host_label", help="Only containers labelled with this host (hosts sharing one daemon).")
@click.option(
    "--state-dir",
    default="~/.local/state/voxbench",
    show_default=True,
    help="Where this host's run states are (runs left in progress are recovered).",
)
@click.option("--skip-recover", is_flag=True, help="Only sweep containers; leave run states alone.")
def cleanup_command(
    dry_run: bool, max_age_hours: float, host_label: str | None, state_dir: str, skip_recover: bool
) -> None:
    """Close runs whose dispatcher is gone and remove orphaned bench containers (by label, never by name)."""
    import logging

    import docker

    from bench_py.hosts.cleanup import recover, sweep, sweep_packs
    from bench_py.run.state import StateStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    client = docker.from_env()
    if not skip_recover:
        for entry in recover(StateStore(state_dir), client, dry_run=dry_run):
            click.echo(
                f"{'would close' if dry_run else 'closed'} run {entry['run_id']} ({entry['was']}): {entry['reason']}"
            )
    removed = sweep(client, max_age_hours, host=host_label, dry_run=dry_run)
    for entry in removed:
        click.echo(
            f"{'would remove' if dry_run else 'removed'} {entry['name']} ({entry['id']}, run "
            f"{entry['run_id']}): {entry['reason']}"
        )
    if not removed:
        click.echo("no bench container to remove")
    for pack in sweep_packs(Path(state_dir), max_age_hours, dry_run=dry_run):
        click.echo(f"{'would remove' if dry_run else 'removed'} {pack}: an interrupted collection's pack")


@main.group()
def baseline() -> None:
    """The incumbent's deferred takes (runs with skip_baseline or an unreachable incumbent)."""


@baseline.command("resume")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--url", help="The incumbent's URL, when it differs from the run's configuration.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="The incumbent's token file on this machine.")
@click.option("--limit", type=int, help="Take at most this many clips now (the rest next time).")
def baseline_resume(run_dir: Path, url: str | None, token_file: str | None, limit: int | None) -> None:
    """Take the incumbent's missing clips for a collected run; resumable, nothing taken twice."""
    import socket

    from bench_py.config.model import ConfigError, load_file
    from bench_py.engines.http import incumbent_target
    from bench_py.measure import deferred

    try:
        config = load_file(str(run_dir / "config.json"))
        incumbent = config.incumbent.model_copy(update={"url": url}) if url else config.incumbent
        reference = run_dir / "reference.wav"
        if not reference.is_file():
            raise click.ClickException(f"{reference} is missing: the cloned condition needs the run's reference clip")
        target = incumbent_target(incumbent, str(reference), config.reference.name, token_file)
        result = deferred.resume(run_dir, target, limit=limit, where=socket.gethostname(), progress=click.echo)
    except (ConfigError, deferred.DeferredError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{result['done']} of {result['owed']} incumbent takes saved ({result['taken']} now)")
    if result["done"] < result["owed"]:
        click.echo("run the same command again to take the rest")


@main.command("run")
@click.argument("run_id")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="paths.state_dir.")
@click.option("--project-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="The project.")
@click.option("--close-unfinished", is_flag=True, help="After the run's process is gone: abort the run if still open.")
def run_command(run_id: str, state_dir: Path, project_dir: Path, close_unfinished: bool) -> None:
    """The host side of one run, every phase in this one process (bench.yml's launcher starts it in tmux)."""
    from bench_py.run import runner

    if close_unfinished:
        sys.exit(runner.close_unfinished(state_dir, run_id, project_dir))
    sys.exit(runner.run(state_dir, run_id, project_dir))
