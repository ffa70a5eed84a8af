#!/usr/bin/python
"""Bring a fetched run into the controller's runs directory whole, or not at all."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_collect
short_description: Put a fetched voxbench run in place on the controller, whole or not at all
description:
  - The controller's side of the collector. A run is fetched into the hidden staging directory
    C(<dest>/.<run id>.partial) and only a whole copy (every file the host has, at its size) is
    moved to C(<dest>/<run id>), where the report, C(voxbench score) and C(voxbench publish) look.
  - A full controller disk, checked before fetching and caught while writing, fails with the
    directory, the space the run needs and what is free, and leaves no partial copy; the host
    keeps the run and it is not marked collected, so the next C(bench.yml) collects it.
options:
  dest:
    description: The controller's runs directory.
    type: path
    required: true
  run_id:
    description: The run being collected.
    type: str
    required: true
  step:
    description:
      - C(prepare) makes an empty staging directory once the disk has room for O(need_bytes)
        (an incomplete copy a killed collection left is removed first).
      - C(unpack) unpacks O(pack) with C(tar) into the staging directory, moves the whole run
        into place and removes O(pack).
      - C(place) moves a run fetched file by file into the staging directory into place, once every
        file of O(files) (relative to O(run_dir)) is there at its size.
      - C(discard) removes the staging directory after a failed fetch and returns the message to fail
        with (O(detail) is what the fetch said).
    type: str
    required: true
    choices: [prepare, unpack, place, discard]
  need_bytes:
    description: The bytes the run needs on the controller (C(prepare); C(discard), to say so).
    type: int
    default: 0
  pack:
    description: The fetched pack on the controller (C(unpack)).
    type: path
  run_dir:
    description: The run's directory on the host (C(place)).
    type: str
  files:
    description: The host's files of the run, as M(ansible.builtin.find) lists them (C(path), C(size)) (C(place)).
    type: list
    elements: dict
    default: []
  detail:
    description: What the failed fetch said (C(discard)).
    type: str
    default: ""
attributes:
  check_mode: {support: none}
  diff_mode: {support: none}
  idempotent: {support: none}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Unpack the run on the controller
  voxbench_collect:
    dest: runs
    run_id: BENCHMARK-VOXTRAL-TITAN-20260101-120000
    step: unpack
    pack: runs/.BENCHMARK-VOXTRAL-TITAN-20260101-120000.tar
  delegate_to: localhost
"""

RETURN = r"""
staging:
  description: The staging directory (C(prepare)).
  returned: success
  type: str
run_dir:
  description: The run's directory on the controller, now whole (C(unpack), C(place)).
  returned: success
  type: str
pack_removed:
  description: The pack was removed once the run was unpacked whole (C(unpack)).
  returned: success
  type: bool
discarded:
  description: Whether an incomplete copy was removed (C(discard)).
  returned: success
  type: bool
error:
  description: What to fail the collection with, saying why and what to do next (C(discard)).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "step": {"type": "str", "required": True, "choices": ["prepare", "unpack", "place", "discard"]},
            "need_bytes": {"type": "int", "default": 0},
            "pack": {"type": "path"},
            "run_dir": {"type": "str"},
            "files": {"type": "list", "elements": "dict", "default": []},
            "detail": {"type": "str", "default": ""},
        },
        required_if=[("step", "unpack", ["pack"]), ("step", "place", ["run_dir"])],
    )
    import posixpath
    from pathlib import Path

    from bench_py.results import collect

    params = module.params
    dest, run_id, step = Path(params["dest"]), params["run_id"], params["step"]
    try:
        if step == "prepare":
            staging = collect.prepare(dest, run_id, params["need_bytes"])
            module.exit_json(changed=True, staging=str(staging))
        if step == "unpack":
            pack = Path(params["pack"])
            done = collect.unpack(pack, dest, run_id)
            pack.unlink(missing_ok=True)  # unpacked whole: the role's own removal is then skipped
            module.exit_json(changed=True, run_dir=str(done), pack_removed=True)
        if step == "place":
            files = {posixpath.relpath(f["path"], params["run_dir"]): int(f["size"]) for f in params["files"]}
            done = collect.place_fetched(dest, run_id, files)
            module.exit_json(changed=True, run_dir=str(done))
        discarded = collect.discard(dest, run_id)
        need = params["need_bytes"] or sum(int(f.get("size", 0)) for f in params["files"])
        error = collect.failure_message(dest, run_id, need, params["detail"])
        module.exit_json(changed=discarded, discarded=discarded, error=error)
    except collect.CollectError as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
