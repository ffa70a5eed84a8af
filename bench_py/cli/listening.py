"""Verbs for what a run leaves: the report, the blind listening session, proxies, the pre-screen,
publishing, corrections."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bench_py.cli.options import config_overrides
from bench_py.cli.root import main

if TYPE_CHECKING:  # the verbs import what they use when they run, to keep the command line quick to start
    from bench_py.judge.session import Session


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
    from bench_py.results.listening import default_listener
    from bench_py.results.report import ReportError, refresh_verdict

    verdict: dict[str, Any] | None
    try:
        session = sessions.create(run_dir)
        if session.revealed and not close:
            verdict = refresh_verdict(run_dir)
            click.echo(f"already revealed; verdict {verdict['verdict']}: {verdict['reason']}")
            return
        names = list(listeners)
        registered_real = [e["name"] for e in sessions.listeners(session) if not e["simulated"]]
        if not names and not registered_real and (terminal or not close):
            names = [default_listener()]
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


def _score_in_terminal(session: Session, listener: str, player: str | None) -> bool:
    from bench_py.judge import terminal

    chosen = player or terminal.default_player()
    if chosen is None:
        click.echo("no audio player found (ffplay, aplay, paplay): clips are not played; use --player", err=True)
    ask = lambda q: click.prompt(q, default="", show_default=False)  # noqa: E731
    return terminal.run(session, listener, ask, click.echo, chosen)


def _serve_page(run_dir: Path, port: int, keep_serving: bool) -> dict[str, Any] | None:
    from bench_py.results.listening import serve_until_revealed

    def announce(url: str, links: dict[str, str]) -> None:
        click.echo(f"listening page: {url}")
        for name, link in links.items():
            click.echo(f"listener {name}: {link}")
        click.echo("each listener opens their own link; you close the session with --close", err=True)

    return serve_until_revealed(run_dir, port, announce, keep_serving)


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
        config = load({"gemma_mode": "parallel", **(config_overrides(config_file, None) or {})})
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

        def confirm(plan: dict[str, Any]) -> bool:
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
        measurements = documents.load_measurements(run_dir / documents.FILE_NAMES["measurements"])
        names = measurements.candidate.name, measurements.incumbent.name
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
