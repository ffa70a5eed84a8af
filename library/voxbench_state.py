#!/usr/bin/python
"""Read a run's state on the host, optionally waiting for it to move."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_state
short_description: Read (and wait on) a voxbench run's state file
description:
  - Returns the run's state, live progress and history. With O(wait_s), waits up to that long for
    the state file to change, so a watcher can poll without busy looping. Read-only.
options:
  state_dir:
    description: The host's voxbench state directory.
    type: path
    required: true
  run_id:
    description: The run to read.
    type: str
    required: true
  wait_s:
    description: Seconds to wait for a change before answering (0 answers at once).
    type: float
    default: 0
  progress_s:
    description:
      - Within O(wait_s), answer a change of progress alone (a request timed) only once this many seconds
        have passed; a transition, or the run ending with its files written, answers at once. 0 answers any change.
    type: float
    default: 0
  mark_collected:
    description: Record that the controller has fetched this run (a later bench.yml then starts a new one).
    type: bool
    default: false
  remove_pack:
    description:
      - With O(mark_collected), the run's pack on the host (the tar the controller fetched and unpacked), removed
        once the run is marked collected, in the same round trip. Absent is fine; a directory is refused.
    type: path
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Follow the run
  voxbench_state:
    state_dir: ~/.local/state/voxbench
    run_id: "{{ run.run_id }}"
    wait_s: 10
    progress_s: 2
  register: state
  until: state.terminal
  retries: 360
  delay: 0
"""

RETURN = r"""
state:
  description: The run's current state.
  returned: success
  type: str
terminal:
  description: Whether the state is DONE or ERROR_ABORTED.
  returned: success
  type: bool
files_written:
  description: Whether the run has written its measurements and verdict (after its final state).
  returned: success
  type: bool
phase:
  description: Live progress of the current phase (utterance n of N, last TTFA).
  returned: success
  type: dict
reason:
  description: Why the run ended, once it has (null before).
  returned: success
  type: str
history:
  description: Every state the run has been in, oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    to: {description: The state entered., type: str}
    from: {description: The state left (absent on the first entry)., type: str}
    transition:
      description: The number of the state machine's transition taken (absent on the first entry).
      type: int
    at: {description: When (ISO 8601, UTC)., type: str}
    reason: {description: Why., type: str}
dispatcher_alive:
  description:
    - Whether the host process running the run's phases still runs; null when none was recorded.
    - False while the run is not terminal means it died; the watcher stops following then.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule


def remove_file(path: str) -> bool:
    """Remove a file; whether there was one. A directory is refused, not removed."""
    import os
    import stat

    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise IsADirectoryError(f"remove_pack {path} is a directory, not a pack")
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "wait_s": {"type": "float", "default": 0.0},
            "progress_s": {"type": "float", "default": 0.0},
            "mark_collected": {"type": "bool", "default": False},
            "remove_pack": {"type": "path"},
        },
        supports_check_mode=True,
    )
    from bench_py.run.state import StateError, StateStore

    if module.params["remove_pack"] and not module.params["mark_collected"]:
        module.fail_json(msg="remove_pack goes with mark_collected: a pack is removed once its run is collected")
    store = StateStore(module.params["state_dir"])
    changed = False
    try:
        if module.params["mark_collected"] and not module.check_mode:
            changed = store.mark_collected(module.params["run_id"])
            if module.params["remove_pack"]:
                changed = remove_file(module.params["remove_pack"]) or changed
        state = store.wait_for_change(
            module.params["run_id"], module.params["wait_s"], progress_s=module.params["progress_s"]
        )
    except (StateError, ValueError, OSError) as error:  # ValueError: not a run id; OSError: the pack
        module.fail_json(msg=str(error))
    module.exit_json(
        changed=changed,
        state=str(state.state),
        terminal=state.terminal,
        files_written=bool(state.changes.get("files_written")),
        phase=state.phase,
        reason=state.reason,
        history=state.history,
        dispatcher_alive=store.dispatcher_alive(state),
    )


if __name__ == "__main__":
    main()
