"""Phase A0's verbs: extract a speaker's clips, list, play and confirm them; the reference store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bench_py.cli.root import main


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

    from bench_py.voice import clips, extract, vtt

    try:
        result = extract.extract(
            film, subtitles, out_dir, speaker=speaker, example=example, cluster_choice=cluster_choice, top=top,
            min_seconds=min_seconds, progress=lambda line: click.echo(line, err=True),
        )  # fmt: skip
    except (clips.ExtractError, vtt.VttError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _list_extraction(result.to_json(), out_dir)


def _list_extraction(data: dict[str, Any], out_dir: Path) -> None:
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
    from bench_py.voice import clips, extract

    try:
        _list_extraction(extract.load(out_dir), out_dir)
    except clips.ExtractError as error:
        raise click.ClickException(str(error)) from None


@voices.command("play")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("rank", type=int)
@click.option("--player", help="Command that plays a WAV (default: ffplay, aplay or paplay).")
def voices_play(out_dir: Path, rank: int, player: str | None) -> None:
    """Play candidate RANK."""
    from bench_py.judge.terminal import default_player
    from bench_py.voice import clips, confirm

    try:
        chosen = confirm.candidate(out_dir, rank)
    except clips.ExtractError as error:
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
    from bench_py.voice import clips, confirm, references

    try:
        entry = confirm.confirm(out_dir, rank, name, references_dir, confirmed_by)
    except (clips.ExtractError, references.ReferenceError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{name}: {entry['file']} ({entry['duration_s']} s, sha256 {entry['sha256'][:12]}…) "
        f"is allowed in {references_dir}"
    )
