"""The ``voxbench`` command line: the group in ``root``, its verbs in one module per phase."""

from bench_py.cli import hosts, listening, standins, voice  # noqa: F401  (each registers its verbs)
from bench_py.cli.root import main

__all__ = ["main"]
