"""The ``voxbench`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench_py import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voxbench")
def main() -> None:
    """Decide with evidence whether a new voice-cloning TTS engine should replace production."""


@main.group()
def standin() -> None:
    """Run the stand-ins that play the GPU world on a machine without one."""


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@standin.command("tts", context_settings=_PASSTHROUGH)
@click.pass_context
def standin_tts(ctx: click.Context) -> None:
    """Streaming TTS server over a real engine (arguments: voxbench standin tts --help)."""
    from bench_py.standins import tts_server

    tts_server.main(ctx.args)


@standin.command("cotenant", context_settings=_PASSTHROUGH)
@click.pass_context
def standin_cotenant(ctx: click.Context) -> None:
    """Co-tenant LLM stand-in doing real CPU work (arguments: voxbench standin cotenant --help)."""
    from bench_py.standins import cotenant_server

    cotenant_server.main(ctx.args)


@main.group()
def images() -> None:
    """Docker images of the stand-ins, built from Debian packages (no registry)."""


@images.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when cached images match the inputs.")
def images_build(force: bool) -> None:
    """Build the stand-in images, or confirm the cached ones are current."""
    from bench_py.standins.images import ImageBuildError, build_standins

    try:
        tags = build_standins(force=force, progress=lambda line: click.echo(line, err=True))
    except ImageBuildError as error:
        raise click.ClickException(str(error)) from None
    for role, tag in tags.items():
        click.echo(f"{role}\t{tag}")


@images.command("pair")
@click.option("--base", required=True, help="A vllm-openai image of this host's platform, already on the host.")
@click.option(
    "--wheel",
    "wheel",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The vllm-omni wheel of the tag to pair (built locally; nothing is downloaded).",
)
@click.option("--tag", required=True, help="Tag for the paired image (then set candidate.image to it).")
def images_pair(base: str, wheel: Path, tag: str) -> None:
    """Build a paired engine image for this host: BASE + vLLM-Omni from WHEEL, refused when the
    vLLM and vLLM-Omni minor versions differ (docs/install-paths.md)."""
    import docker

    from bench_py.engines.paired import PairingError, pair

    try:
        built = pair(docker.from_env(), base, wheel, tag)
    except PairingError as error:
        raise click.ClickException(str(error)) from None
    versions = ", ".join(f"{name} {version}" for name, version in built["versions"].items())
    click.echo(f"{built['tag']}\t{built['architecture']}\t{versions}")


@main.group()
def reference() -> None:
    """Reference clips for cloning."""


@reference.command("default")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def reference_default(path: str) -> None:
    """Write the default reference clip (a voice neither stand-in engine speaks with) to PATH."""
    from bench_py.standins.reference import synthesize_reference

    try:
        pcm = synthesize_reference(path)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{path}\t{pcm.duration_s:.2f} s at {pcm.rate} Hz")


def _overrides(config_file: str | None, profile: str | None) -> dict | None:
    import yaml

    overrides: dict = {}
    if config_file:
        with open(config_file, encoding="utf-8") as handle:
            overrides = yaml.safe_load(handle) or {}
        if not isinstance(overrides, dict):
            raise click.BadParameter("the file must hold a mapping of configuration keys", param_hint="--config")
    if profile:
        overrides["profile"] = profile
    return overrides or None


def _variables(pairs: tuple[str, ...]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--var")
        out[key] = yaml.safe_load(value)
    return out


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
                config=_overrides(config_file, profile),
                extra_vars=_variables(variables),
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
                extra_vars=_variables(variables),
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
        plans = make_plans(gemma_mode, config=_overrides(config_file, None), inventory=inventory, limit=limit)
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


@main.command("rehearsal")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cache/rehearsal"),
    show_default=True,
    help="Where the rehearsal keeps its keys, inventory, bundles, runs and branch.",
)
def rehearsal_command(workdir: Path) -> None:
    """The production route on this machine (make rehearsal): test hosts named titan and panda,
    inventory/titan.example with only allow-listed changes, setup.yml from the bundle, then
    bench.yml in parallel (vLLM-Omni 0.30) and pause-gemma (0.18). Exit 0 when both end as a real
    run should; prints its time."""
    from bench_py.api import PROJECT_DIR
    from bench_py.standins.rehearsal import main as rehearse

    sys.exit(rehearse(PROJECT_DIR, workdir.resolve(), say=lambda line: click.echo(line, err=True)))


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
        config = load({"gemma_mode": "parallel", **(_overrides(config_file, None) or {})})
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

    from bench_py.hosts.cleanup import recover, sweep
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


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write (default: RUN_DIR/report.html)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the recomputed verdict as JSON.")
def report_command(run_dir: Path, out: Path | None, as_json: bool) -> None:
    """Rebuild the HTML report from a run's files alone and recompute the verdict.

    Exit status 1 when the files are invalid or the stored verdict does not recompute.
    """
    import json

    from bench_py.results.figures import figures, summary_lines
    from bench_py.results.report import ReportError, build

    try:
        path, verdict = build(run_dir, out)
    except ReportError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(verdict, indent=2, sort_keys=True))
        return
    for line in summary_lines(figures(run_dir)):
        click.echo(line)
    click.echo(f"report    {path}")


@main.command("score")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: any free one).")
@click.option(
    "--listener",
    "listeners",
    multiple=True,
    help="Register a listener (repeatable); each gets a personal link. Default: one listener named after you.",
)
@click.option("--terminal", is_flag=True, help="Score in this terminal (one listener) instead of a browser.")
@click.option("--player", help="Terminal mode: command that plays a WAV (default: ffplay, aplay or paplay).")
@click.option("--simulate", type=int, default=0, help="Add answers from this many simulated listeners (never counted).")
@click.option(
    "--close",
    "--abandon",
    "close",
    is_flag=True,
    help="Operator: close the session and reveal now, even if some listener has not finished.",
)
@click.option("--keep-serving", is_flag=True, help="Do not stop the server after the reveal.")
def score_command(
    run_dir: Path,
    port: int,
    listeners: tuple[str, ...],
    terminal: bool,
    player: str | None,
    simulate: int,
    close: bool,
    keep_serving: bool,
) -> None:
    """Blind A/B listening for a collected run; reveals and derives the verdict at the end.

    Registers the listeners and serves the page on 127.0.0.1 with a random token in its URL; each
    listener gets a personal link (also written, owner-only, to RUN_DIR/scoring/server.json). The
    session is revealed when every registered listener has finished, or when you close it
    (--close); no listener can. Every answer is saved as it is given: run the same command again
    to go on where you stopped, or, while the page is served, to register another listener.
    """
    from bench_py.judge import session as sessions
    from bench_py.judge.server import listener_link, running_server
    from bench_py.results.report import ReportError, refresh_verdict

    try:
        session = sessions.create(run_dir)
        if session.revealed and not close:
            verdict = refresh_verdict(run_dir)
            click.echo(f"already revealed; verdict {verdict['verdict']}: {verdict['reason']}")
            return
        names = list(listeners)
        registered_real = [e["name"] for e in sessions.listeners(session) if not e["simulated"]]
        if not names and not registered_real and (terminal or not close):
            names = [_default_listener()]
        if terminal and len(names) > 1:
            raise click.UsageError("--terminal scores for one listener: give one --listener")
        for name in names:
            sessions.register(session, name)
        if simulate:
            written = sessions.simulate(session, simulate)
            click.echo(f"{written} simulated answers added (labelled simulated: the rule ignores them)")
        verdict = None
        if close:
            sessions.reveal(session, by="operator")
            verdict = refresh_verdict(run_dir)
        elif terminal:
            who = names[0] if names else registered_real[0]
            if not _score_in_terminal(session, who, player):
                click.echo("stopped; every answer so far is saved. Run the same command to go on.")
                return
            if not sessions.everyone_finished(session):
                waiting = sorted(n for n, done in sessions.finished_listeners(session).items() if not done)
                click.echo(
                    f"{who} has scored every pair; the session is revealed when {', '.join(waiting)} "
                    f"{'has' if len(waiting) == 1 else 'have'} finished too, or when the operator closes it "
                    f"(voxbench score {run_dir} --close)"
                )
                return
            sessions.reveal(session, by="listeners")
            verdict = refresh_verdict(run_dir)
        elif (server := running_server(run_dir)) is not None:
            click.echo(f"the page is already served (pid {server['pid']}): {server['url']}")
            for entry in sessions.listeners(session):
                if not entry["simulated"]:
                    link = listener_link(server["url"], server["secret"], entry["name"])
                    click.echo(f"listener {entry['name']}: {link}")
            return
        else:
            verdict = _serve_page(run_dir, port, keep_serving)
    except (sessions.SessionError, ReportError) as error:
        raise click.ClickException(str(error)) from None
    if verdict:
        click.echo(f"revealed; verdict {verdict['verdict']}: {verdict['reason']}")


def _default_listener() -> str:
    """The operator's own name, as a listener name."""
    import getpass
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", getpass.getuser()).lstrip("-_.")[:64]
    return name or "listener"


def _score_in_terminal(session, listener: str, player: str | None) -> bool:
    from bench_py.judge import terminal

    chosen = player or terminal.default_player()
    if chosen is None:
        click.echo("no audio player found (ffplay, aplay, paplay): clips are not played; use --player", err=True)
    ask = lambda q: click.prompt(q, default="", show_default=False)  # noqa: E731
    return terminal.run(session, listener, ask, click.echo, chosen)


def _serve_page(run_dir: Path, port: int, keep_serving: bool) -> dict | None:
    import asyncio

    from bench_py.judge.server import ListeningServer, serve

    def announce(url: str, links: dict[str, str]) -> None:
        click.echo(f"listening page: {url}")
        for name, link in links.items():
            click.echo(f"listener {name}: {link}")
        click.echo("each listener opens their own link; you close the session with --close", err=True)

    def derive_verdict(revealed: Path) -> dict:
        from bench_py.judge.session import SessionError
        from bench_py.results.report import ReportError, refresh_verdict

        try:
            return refresh_verdict(revealed)
        except (ReportError, SessionError) as error:
            return {"verdict": None, "reason": f"the verdict could not be derived: {error}"}

    server = ListeningServer(run_dir, derive_verdict, exit_after_reveal=not keep_serving)
    asyncio.run(serve(server, port, announce=announce))
    return server.verdict


@main.command("proxies")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def proxies_command(run_dir: Path) -> None:
    """Objective proxies of every saved take (similarity, ASR word error rate, loudness, duration),
    written to RUN_DIR/proxies.json and shown in the report beside the verdict."""
    from bench_py.documents import RunFileError
    from bench_py.judge import proxies
    from bench_py.results.report import ReportError, build

    try:
        data = proxies.write(run_dir)
        build(run_dir)
    except (RunFileError, ReportError) as error:
        raise click.ClickException(str(error)) from None
    for side, conditions in sorted(data["summary"].items()):
        for condition, p in sorted(conditions.items()):
            click.echo(
                f"{side:<10}{condition:<8} similarity {p['similarity']}  WER {p['wer']}  "
                f"loudness {p['loudness_lufs']} LUFS  duration ratio {p['duration_ratio']}"
            )


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


#: Exit code of ``voxbench prescreen`` when the decision is to stop before any host work.
EXIT_PRESCREEN_ABORT = 4


@main.command("prescreen")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="YAML overrides.")
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The reference clip (default: the allowlisted one named in the configuration).",
)
@click.option("--yes", is_flag=True, help="Send without asking after the cost estimate.")
@click.option("--estimate", is_flag=True, help="Print what would be sent and its estimated cost; send nothing.")
@click.option("--answer", type=click.Choice(["abort", "continue"]), help="The answer when aborting is recommended.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where the record prescreen-<stamp>.json goes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def prescreen_command(
    config_file: str | None,
    reference: Path | None,
    yes: bool,
    estimate: bool,
    answer: str | None,
    out: Path,
    as_json: bool,
) -> None:
    """Optional: clone a few sentences with Mistral's hosted API and compare them with the reference.

    Prints the cost estimate before sending anything. When every take is far from the reference it
    recommends stopping before any host work and records your answer; exit status 4 when the
    decision is to stop. A pass never green-lights the swap: the open weights cannot clone.
    """
    import json

    from bench_py.config.model import ConfigError, load
    from bench_py.judge import prescreen
    from bench_py.voice.references import ReferenceError, verify

    try:
        config = load({"gemma_mode": "parallel", **(_overrides(config_file, None) or {})})
        if estimate:
            plan = prescreen.plan(config)
            click.echo(
                json.dumps(plan, indent=2)
                if as_json
                else (
                    f"would send {len(plan['texts'])} sentences, {plan['characters']} characters, to {plan['url']}: "
                    f"estimated {plan['estimated_usd']:.4f} USD at {plan['price']}"
                )
            )
            return
        if reference is None:
            reference = Path(verify(Path(config.reference.dir), config.reference.name)["path"])

        def confirm(plan: dict) -> bool:
            click.echo(
                f"prescreen: {len(plan['texts'])} sentences, {plan['characters']} characters to {plan['url']} "
                f"({plan['model']}), estimated {plan['estimated_usd']:.4f} USD at {plan['price']}",
                err=as_json,
            )
            return yes or click.confirm("send them?", default=False)

        def ask(recommendation: str) -> str:
            click.echo(f"prescreen recommends: {recommendation}", err=as_json)
            if answer:
                return answer
            return "abort" if click.confirm("stop here, before any host work?", default=True) else "continue"

        out.mkdir(parents=True, exist_ok=True)
        record = prescreen.run(config, reference, out, confirm=confirm, answer=ask)
    except (ConfigError, ReferenceError, prescreen.PrescreenError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
    else:
        if record["sent"]:
            click.echo(f"similarities to the reference: {record['similarities']} (threshold {record['threshold']:g})")
        click.echo(prescreen.CAVEAT)
        click.echo(f"recorded in {record['file']}")
    if record.get("sent") and not record["proceed"]:
        sys.exit(EXIT_PRESCREEN_ABORT)


@main.command("extract")
@click.argument("film", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("subtitles", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the ranked clips and candidates.json go (nothing is written elsewhere).",
)
@click.option("--speaker", help="The speaker's name in <v Name> spans (subtitles that name speakers).")
@click.option(
    "--example",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A clip of the target voice: ranks by similarity to it (subtitles without names).",
)
@click.option(
    "--cluster", "cluster_choice", type=int, help="The speaker cluster you picked (see `voxbench voices list`)."
)
@click.option("--top", default=5, show_default=True, help="How many of the best clips to cut.")
@click.option(
    "--min-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(1.0, 15.0),
    help="The shortest single stretch offered; with too few, short lines are joined into references.",
)
@click.option("--json", "as_json", is_flag=True, help="Print candidates.json.")
def extract_command(
    film: Path, subtitles: Path, out_dir: Path, speaker: str | None, example: Path | None,
    cluster_choice: int | None, top: int, min_seconds: float, as_json: bool,
) -> None:  # fmt: skip
    """Phase A0: rank reference clips of one speaker in a film with subtitles (WebVTT or SRT), cut the best.

    Without --speaker or --example on subtitles that name nobody, the speakers are clustered and
    one clip per cluster is written to OUT/clusters/: listen, then run again with --cluster N.
    When too few single stretches reach --min-seconds, the speaker's cleanest short lines are
    joined (with short silences) into 5-15 s references, ranked with the others.
    """
    import json

    from bench_py.voice import extract, vtt

    try:
        result = extract.extract(
            film, subtitles, out_dir, speaker=speaker, example=example, cluster_choice=cluster_choice, top=top,
            min_seconds=min_seconds, progress=lambda line: click.echo(line, err=True),
        )  # fmt: skip
    except (extract.ExtractError, vtt.VttError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _list_extraction(result.to_json(), out_dir)


def _list_extraction(data: dict, out_dir: Path) -> None:
    from bench_py.voice import findings

    click.echo(f"subtitles: {data.get('syntax', 'webvtt')}, {data['format']} ({data['format_reason']})")
    if data["mode"] == "choose-cluster":
        click.echo("speakers found (listen to each, then run again with --cluster N):")
        for entry in data["clusters"]:
            click.echo(
                f"  cluster {entry['cluster']}: {entry['speech_s']} s of speech  {out_dir / (entry.get('file') or '')}"
            )
        return
    for entry in data["candidates"]:
        if entry.get("file"):
            spans = entry.get("spans") or [[entry["start"], entry["end"]]]
            length = sum(b - a for a, b in spans) + 0.3 * (len(spans) - 1)
            kind = f"joined from {len(spans)} lines" if entry.get("kind") == "joined" else "single"
            click.echo(
                f"  {entry['rank']:>2}. {entry['file']:<22} {length:5.1f} s  "
                f"similarity {entry['similarity']:.3f}  SNR {entry['snr_db']:.0f} dB  {kind}"
            )
    for line in findings.lines(data.get("summary", {})):
        click.echo(line)
    click.echo(
        f"listen: voxbench voices play {out_dir} RANK; keep one: voxbench voices confirm {out_dir} RANK --name NAME"
    )


@main.group()
def voices() -> None:
    """List, play and confirm the clips `voxbench extract` proposed."""


@voices.command("list")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def voices_list(out_dir: Path) -> None:
    """The ranked candidates (or the speaker clusters) of an extraction."""
    from bench_py.voice import extract

    try:
        _list_extraction(extract.load(out_dir), out_dir)
    except extract.ExtractError as error:
        raise click.ClickException(str(error)) from None


@voices.command("play")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("rank", type=int)
@click.option("--player", help="Command that plays a WAV (default: ffplay, aplay or paplay).")
def voices_play(out_dir: Path, rank: int, player: str | None) -> None:
    """Play candidate RANK."""
    from bench_py.judge.terminal import default_player
    from bench_py.voice import confirm, extract

    try:
        chosen = confirm.candidate(out_dir, rank)
    except extract.ExtractError as error:
        raise click.ClickException(str(error)) from None
    command = player or default_player()
    if command is None:
        raise click.ClickException(f"no audio player found; open {chosen['path']} yourself or pass --player")
    confirm.play(Path(chosen["path"]), command)


@voices.command("confirm")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("rank", type=int)
@click.option("--name", required=True, help="The reference's name (configuration: reference.name).")
@click.option(
    "--references",
    "references_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("voice-references"),
    show_default=True,
    help="The references store (and its metadata.json).",
)
@click.option("--by", "confirmed_by", help="Who listened and confirmed (default: this user).")
def voices_confirm(out_dir: Path, rank: int, name: str, references_dir: Path, confirmed_by: str | None) -> None:
    """Confirm candidate RANK: it enters the allowlist with its hash and provenance."""
    from bench_py.voice import confirm, extract, references

    try:
        entry = confirm.confirm(out_dir, rank, name, references_dir, confirmed_by)
    except (extract.ExtractError, references.ReferenceError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{name}: {entry['file']} ({entry['duration_s']} s, sha256 {entry['sha256'][:12]}…) "
        f"is allowed in {references_dir}"
    )


@main.command("publish")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--repo",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The checkout whose remote receives the benchmark branch.",
)
@click.option("--remote", default="origin", show_default=True)
@click.option("--base", default="main", show_default=True, help="The branch the benchmark branch starts from.")
@click.option("--no-push", is_flag=True, help="Commit on the local branch only.")
def publish_command(run_dir: Path, repo: Path, remote: str, base: str, no_push: bool) -> None:
    """Commit a run's files and WAVs (git-lfs) on its benchmark branch and push it."""
    from bench_py.judge.session import SessionError
    from bench_py.results.artifacts import ArtifactsError
    from bench_py.results.publish import publish_run
    from bench_py.results.report import ReportError

    try:
        result = publish_run(run_dir, repo, remote=remote, base=base, push=not no_push)
    except (ArtifactsError, ReportError, SessionError) as error:
        raise click.ClickException(str(error)) from None
    state = "new commit" if result.committed else "no change"
    click.echo(f"branch {result.branch} at {result.commit[:12]} ({state}{', pushed' if result.pushed else ''})")


@main.command("correct")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--reason", required=True, help="Why the run's conclusion is corrected.")
@click.option("--evidence", "evidence", multiple=True, required=True, help="A piece of evidence (repeatable).")
@click.option("--retracts", help="The verdict this correction withdraws.")
@click.option("--verdict", "new_verdict", help="The verdict that stands after it.")
@click.option("--by", "by", default=lambda: __import__("getpass").getuser(), show_default="the current user")
def correct_command(
    run_dir: Path, reason: str, evidence: tuple[str, ...], retracts: str | None, new_verdict: str | None, by: str
) -> None:
    """Append a correction to a run (append-only: nothing else is rewritten). --verdict and
    --retracts must be verdicts DESIGN's table can give for this run's engines."""
    import datetime as dt

    from bench_py import documents
    from bench_py.judge.verdict import VerdictNameError, check_verdict_name

    try:
        measurements = documents.read("measurements", run_dir / documents.FILE_NAMES["measurements"])
        names = measurements["candidate"]["name"], measurements["incumbent"]["name"]
        for option, value in (("--verdict", new_verdict), ("--retracts", retracts)):
            if value is not None:
                check_verdict_name(value, *names, what=option)
    except (documents.RunFileError, OSError, VerdictNameError) as error:
        raise click.ClickException(str(error)) from None
    record = {
        "schema": "voxbench/corrections/v0",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "by": by,
        "reason": reason,
        "evidence": list(evidence),
        "retracts": retracts,
        "verdict": new_verdict,
    }
    try:
        documents.append("corrections", run_dir / documents.FILE_NAMES["corrections"], record)
    except documents.RunFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"correction appended to {run_dir / documents.FILE_NAMES['corrections']}")


@main.command("state-diagram")
def state_diagram_command() -> None:
    """Print the run's state machine as a Mermaid diagram, drawn from the transition table."""
    from bench_py.run.state import mermaid_diagram

    click.echo(mermaid_diagram(), nl=False)


@main.command("version")
def version_command() -> None:
    """Print the exact installed version (release + digest of the package files)."""
    from bench_py.version import version_id

    click.echo(version_id())


@main.group()
def demo() -> None:
    """The embedded default: everything a first run on this machine needs."""


@demo.command("prepare")
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path.cwd(),
    show_default="the current directory",
    help="Where voice-references/ is resolved from.",
)
def demo_prepare(project_dir: Path) -> None:
    """Build images, create demo token files and reference clip, start the production stand-ins."""
    from bench_py.config import embedded_overrides
    from bench_py.config.model import load
    from bench_py.standins.demo import prepare

    # The embedded default is inventory/local's configuration: the stand-ins and this machine's ports.
    config = load({"gemma_mode": "parallel", **embedded_overrides()})
    prepare(config, project_dir, say=lambda line: click.echo(line, err=True))


@demo.command("film")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cache/demo-film"),
    show_default=True,
)
@click.option("--seed", default=0, show_default=True, help="The same seed gives the same film.")
@click.option("--lines", default=30, show_default=True, help="Lines of dialogue.")
def demo_film(out_dir: Path, seed: int, lines: int) -> None:
    """Generate the film stand-in for Phase A0 (several real voices, subtitles in six shapes, ground truth)."""
    import json

    from bench_py.standins.film import FILES, generate

    truth_path = out_dir / "truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if truth.get("seed") == seed and len(truth.get("lines", [])) == lines:
            click.echo(f"film stand-in {out_dir / truth['film']} is up to date")
            return
    truth = generate(out_dir, seed=seed, lines=lines)
    click.echo(
        f"film stand-in {out_dir / truth['film']}: {truth['duration_s']:.0f} s, target {truth['target']}, "
        f"subtitles {', '.join(FILES.values())}"
    )


if __name__ == "__main__":
    sys.exit(main())
