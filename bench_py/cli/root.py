"""The ``voxbench`` group itself, and the verbs that belong to no phase."""

from __future__ import annotations

import click

from bench_py import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voxbench")
def main() -> None:
    """Decide with evidence whether a new voice-cloning TTS engine should replace production."""


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
