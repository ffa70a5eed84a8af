"""Phase 4: blind A/B listening of a collected run, until the reveal and its verdict."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_score
short_description: Serve the blind A/B listening page of a collected run until the reveal; return the verdict
description:
  - Opens (or reopens) the run's listening session, registers I(listeners), and serves the page on 127.0.0.1 with a
    random token in its URL. Each listener's personal link is written, owner-only, to
    C(RUN_DIR/scoring/server.json) as soon as the page is up (score.yml shows them). Every answer is saved as it is
    given.
  - Returns when every registered listener has finished, or the operator closed the session
    (C(voxbench score RUN_DIR --close)); no listener can. The verdict, derived again from the run's files, is the
    fact C(voxbench_verdict). Run it with C(async) and C(poll=0) and wait with M(ansible.builtin.async_status) - a
    listening session lasts as long as its listeners.
  - A session revealed already is not served again (C(changed=false)); its verdict is derived from the files.
options:
  run_dir: {description: The collected run (a directory with measurements.json)., type: path, required: true}
  listeners:
    description: The listeners to register; none given and none registered registers one named after the user.
    type: list
    elements: str
    default: []
  port: {description: The page's port on 127.0.0.1; 0 takes any free one., type: int, default: 0}
  close:
    description: Reveal now instead of serving (the operator closes; recorded as abandoned if someone had not finished).
    type: bool
    default: false
attributes:
  check_mode: {support: none}
  diff_mode: {support: none}
  idempotent: {support: partial, details: a revealed session is left as it is; an open one is served}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Serve the page until the reveal
  voxbench_score:
    run_dir: runs/BENCHMARK-VOXTRAL-TITAN-20261126-101500
    listeners: [ana, ben]
  async: 86400
  poll: 0
  register: listening
"""

RETURN = r"""
revealed:
  description: Whether the session is revealed (false only when the page stopped before a reveal, a failure).
  returned: always
  type: bool
ansible_facts:
  description: C(voxbench_verdict), the verdict the reveal led to.
  returned: success
  type: dict
  contains:
    voxbench_verdict:
      description: The run's verdict document as derived from its files after the reveal.
      type: dict
      contains:
        verdict:
          description: C(swap_candidate), C(keep_incumbent) or C(inconclusive) (null when it could not be derived).
          type: str
        reason: {description: Why, in one sentence., type: str}
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "run_dir": {"type": "path", "required": True},
            "listeners": {"type": "list", "elements": "str", "default": []},
            "port": {"type": "int", "default": 0},
            "close": {"type": "bool", "default": False},
        },
    )
    from pathlib import Path

    from bench_py import documents
    from bench_py.judge.session import SessionError
    from bench_py.results import listening
    from bench_py.results.report import ReportError

    params = module.params
    run_dir = Path(params["run_dir"])
    if not (run_dir / documents.FILE_NAMES["measurements"]).is_file():
        module.fail_json(msg=f"{run_dir} holds no collected run (no measurements.json)")
    try:
        outcome = listening.score(run_dir, params["listeners"], port=params["port"], close=params["close"])
    except (SessionError, ReportError) as error:
        module.fail_json(msg=str(error))
    if outcome.verdict is None:  # the page stopped before a reveal: nothing to decide yet
        module.fail_json(
            msg=f"the listening page stopped before the session was revealed; every answer is saved: "
            f"run it again to go on, or close it (voxbench score {run_dir} --close)",
            revealed=outcome.revealed,
        )
    module.exit_json(
        changed=outcome.changed, revealed=outcome.revealed, ansible_facts={"voxbench_verdict": outcome.verdict}
    )


if __name__ == "__main__":
    main()
