"""Verbs for the stand-ins, their images, the demo and the rehearsal."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench_py.cli.root import main


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

    from bench_py.standins.film import generate
    from bench_py.standins.film_subtitles import FILES

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
