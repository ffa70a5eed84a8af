#!/usr/bin/python
"""Read a fetched run directory and return its figures as facts."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_results
short_description: Return a collected run's figures as ansible_facts
description:
  - Reads C(measurements.json) (validated against its schema) and C(verdict.json) from a run
    directory fetched to the controller and returns the headline figures as the fact
    C(voxbench_results), so they appear in ansible-runner's C(runner_on_ok) events.
  - Rebuilds C(report.html) in the run directory from the files alone, recomputing the verdict;
    a stored verdict that does not recompute fails the task.
options:
  run_dir:
    description: The run directory on the controller.
    type: path
    required: true
  proxies:
    description:
      - First compute the objective proxies of the saved takes (speaker similarity, ASR word error
        rate, loudness, duration ratio) into C(proxies.json), shown in the report beside the verdict.
      - Needs the C(judge) extra (resemblyzer, pocketsphinx) on the controller.
    type: bool
    default: false
  seal:
    description:
      - First create the run's blind listening session when both engines saved takes and there is
        none yet (clips by opaque id; the mapping and the rule sealed by hash before anyone listens).
    type: bool
    default: false
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Read the run's figures
  voxbench_results:
    run_dir: runs/BENCHMARK-VOXTRAL-TITAN-20260101-120000
"""

RETURN = r"""
ansible_facts:
  description: C(voxbench_results) with run id, final state, verdict and per-side figures.
  returned: success
  type: dict
  contains:
    voxbench_results:
      description: The run's headline figures (also what the Python API reads from C(runner_on_ok)).
      type: dict
      contains:
        run_id: {description: The run., type: str}
        run_dir: {description: The run directory read (on the controller)., type: str}
        sealed:
          description: Whether the blind listening session is not revealed yet (real-time factors are then withheld).
          type: bool
        final_state:
          description: C(DONE) or C(ERROR_ABORTED); bench.yml fails the play on anything but C(DONE).
          type: str
        reason: {description: Why the run ended (null for a run that ended C(DONE) without one)., type: str}
        verdict: {description: The verdict recomputed from the files (null before one was derived)., type: str}
        verdict_reason: {description: The verdict's reason., type: str}
        verdict_detail:
          description: The whole verdict (row, evidence, listening statistics) without its inputs' hashes.
          type: dict
        utterances:
          description: The sentences benchmarked, each with its index.
          type: list
          elements: dict
        rule:
          description: The decision rule's thresholds sealed at PREFLIGHT (null when PREFLIGHT recorded none).
          type: dict
        rule_sha256: {description: The sealed rule's hash., type: str}
        gemma_mode: {description: How the co-tenant was treated., type: str}
        sides:
          description: Per side (candidate, incumbent) and condition, requests, ok, timeouts and the p50 of TTFA,
            TTFB, total time and RTF.
          type: dict
        phase3_passed: {description: Whether the timed loops passed Phase 3 (null when they did not run)., type: bool}
        cotenant:
          description: The co-tenant's latency p50 at baseline and after teardown, and their ratio.
          type: dict
        kernel_errors:
          description: Kernel errors found in the engine's log (null when none were looked for).
          type: dict
        containers_removed: {description: The engines' containers teardown removed., type: list, elements: str}
        containers_remaining: {description: Containers teardown could not remove., type: list, elements: str}
        standins:
          description: Per side, whether what answered was one of voxbench's stand-ins rather than the engine.
          type: dict
report:
  description: Path of the rebuilt HTML report.
  returned: success
  type: str
summary:
  description: The one-screen summary, one line per item.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "run_dir": {"type": "path", "required": True},
            "proxies": {"type": "bool", "default": False},
            "seal": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    from pathlib import Path

    from bench_py.judge.session import SessionError
    from bench_py.results.figures import ResultsError
    from bench_py.results.refresh import refresh
    from bench_py.results.report import ReportError
    from bench_py.run.measurements import MeasurementsError

    params = module.params
    try:
        done = refresh(
            Path(params["run_dir"]), proxies=params["proxies"], seal=params["seal"], dry_run=module.check_mode
        )
    except (MeasurementsError, ResultsError, ReportError, SessionError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(
        changed=done.changed,
        ansible_facts={"voxbench_results": done.facts},
        summary=done.summary,
        report=str(done.report),
    )


if __name__ == "__main__":
    main()
