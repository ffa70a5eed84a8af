"""The phases of a run on the host, each asserting the state it expects.

Every phase writes its own file into the run directory the moment it has something to say,
so a failure later never loses what an earlier phase measured. TEARDOWN (and an abort from
STARTING or BENCHING) removes the run's containers, checks the co-tenant, and assembles
``measurements.json`` from those files.

One module per phase, each a function of the run (:class:`~bench_py.run.phases.context.RunContext`:
its store, directory, configuration and the documents they share): :mod:`.opening` (PREFLIGHT,
BASELINE), :mod:`.starting` (STARTING: the install paths, the sanity check, the cloning probe and
the preset sweep), :mod:`.benching` (BENCHING), :mod:`.closing` (TEARDOWN, the abort,
``measurements.json``). :class:`Run` walks them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench_py.run.abort import Aborted
from bench_py.run.phases import benching, closing, opening, starting
from bench_py.run.phases.context import RunContext

#: Each phase, by the name ``voxbench run`` walks it under, in the order it walks them.
PHASES: dict[str, Callable[[RunContext], dict[str, Any]]] = {
    "preflight": opening.preflight,
    "baseline": opening.baseline,
    "starting": starting.starting,
    "benching": benching.benching,
    "teardown": closing.teardown,
}


class Run(RunContext):
    """One run on this host, walked a phase at a time by ``voxbench run``."""

    def run_phase(self, phase: str, reason: str = "aborted") -> dict[str, Any]:
        """One phase (or the abort), as ``voxbench run`` walks them: a full disk anywhere ends the
        run through teardown, into the space the released reserve gives back."""
        try:
            with self.disk_full_is_an_abort():
                return closing.abort(self, reason) if phase == "abort" else PHASES[phase](self)
        except Aborted as error:
            raise closing.aborted_by(self, error) from None
