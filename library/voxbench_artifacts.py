#!/usr/bin/python
"""Commit a run's files on its benchmark branch (WAVs in git-lfs) and push it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_artifacts
short_description: Commit a voxbench run on its benchmark branch and push it
description:
  - Seals the run's blind listening session (when both engines saved takes and there is none yet),
    rebuilds the report (recomputing the verdict), then, in a temporary worktree of I(repo) started
    from I(remote)/I(base), commits the run directory under C(docs/<run id>/) (WAVs tracked by
    git-lfs) on the branch C(<candidate>-bench-<YYYYMMDD-HHMMSS>), and pushes branch and LFS objects.
  - Until the session is revealed only the sealed view is committed (opaque clips, the session's
    hashes, latency summaries, the sealed report); the per-request records, proxies, answers and
    the takes under their sides' names follow the reveal.
  - The user's checkout, its current branch and its git configuration are not touched; nothing is
    committed to I(base). Running it again with the same files adds no commit (C(changed=false)).
options:
  repo:
    description: The checkout whose remote receives the branch (its credentials are git's own).
    type: path
    required: true
  run_dir:
    description: The run directory (on the host this task runs on).
    type: path
    required: true
  remote:
    description: The remote to fetch from and push to.
    type: str
    default: origin
  base:
    description: The branch the benchmark branch starts from.
    type: str
    default: main
  push:
    description: Push the branch (and its LFS objects).
    type: bool
    default: true
  embedded_origin:
    description:
      - Create the embedded default's stand-in for the user's repository first, when I(repo) does
        not exist (a bare origin beside it and a checkout of it).
    type: bool
    default: false
attributes:
  check_mode: {support: none}
  diff_mode: {support: none}
  idempotent: {support: full}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Commit the run on its benchmark branch
  voxbench_artifacts:
    repo: ~/src/home-ai
    run_dir: runs/BENCHMARK-VOXTRAL-TITAN-20260101-120000
"""

RETURN = r"""
branch:
  description: The benchmark branch.
  returned: success
  type: str
commit:
  description: The branch's head commit.
  returned: success
  type: str
pushed:
  description: Whether this call pushed.
  returned: success
  type: bool
files:
  description: Paths written in the branch.
  returned: success
  type: list
  elements: str
repo:
  description:
    - The checkout the branch was committed in (absolute).
    - With O(embedded_origin) and no checkout at O(repo), the one created, which is always
      C(checkout) beside the bare C(origin.git) in the directory that holds O(repo).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "repo": {"type": "path", "required": True},
            "run_dir": {"type": "path", "required": True},
            "remote": {"type": "str", "default": "origin"},
            "base": {"type": "str", "default": "main"},
            "push": {"type": "bool", "default": True},
            "embedded_origin": {"type": "bool", "default": False},
        },
    )
    from pathlib import Path

    from bench_py.judge.session import SessionError
    from bench_py.results.artifacts import ArtifactsError, ensure_embedded_origin
    from bench_py.results.publish import publish_run
    from bench_py.results.report import ReportError

    params = module.params
    repo = Path(params["repo"])
    try:
        if params["embedded_origin"] and not (repo / ".git").exists():
            repo = ensure_embedded_origin(repo.parent)
        result = publish_run(
            Path(params["run_dir"]), repo, remote=params["remote"], base=params["base"], push=params["push"]
        )
    except (ArtifactsError, ReportError, SessionError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(
        changed=result.committed or result.pushed,
        branch=result.branch,
        commit=result.commit,
        pushed=result.pushed,
        files=result.files,
        repo=result.repo,
    )


if __name__ == "__main__":
    main()
