"""voxbench_artifacts: a run committed on its benchmark branch and pushed, into a real local origin
(the embedded default's stand-in for the user's repository; no network, no credentials)."""

from __future__ import annotations

import subprocess

from bench_py.results.artifacts import branch_name, run_stamp
from bench_py.run.state import StateStore
from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

artifacts_module = load_module("voxbench_artifacts")


def git(*args: str, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_repo_and_run_dir_are_required():
    assert fail_module(artifacts_module, {"push": False})["msg"] == "missing required arguments: repo, run_dir"


def test_check_mode_is_not_supported_and_skips_before_touching_anything(tmp_path):
    args = {"repo": str(tmp_path / "checkout"), "run_dir": str(tmp_path / "run"), "embedded_origin": True}
    result = run_module(artifacts_module, args, check_mode=True)
    assert result["skipped"] is True and "does not support check mode" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_a_repo_that_is_not_a_checkout_fails_saying_so(ended_run, tmp_path):
    state_dir, run_id = ended_run
    not_a_checkout = tmp_path / "plain"
    not_a_checkout.mkdir()
    args = {"repo": str(not_a_checkout), "run_dir": str(StateStore(state_dir).run_dir(run_id))}
    result = fail_module(artifacts_module, args)
    assert result["msg"] == f"{not_a_checkout} is not a git checkout (no .git)"


def test_the_run_is_committed_on_its_branch_pushed_once_and_not_again(ended_run, tmp_path):
    state_dir, run_id = ended_run
    run_dir = StateStore(state_dir).run_dir(run_id)
    home = tmp_path / "home"
    args = {"repo": str(home / "checkout"), "run_dir": str(run_dir), "embedded_origin": True}
    result = run_module(artifacts_module, args)
    assert result["changed"] is True and result["pushed"] is True
    assert result["branch"] == branch_name("voxtral", run_id) == f"voxtral-bench-{run_stamp(run_id)}"
    assert len(result["commit"]) == 40
    assert result["repo"] == str((home / "checkout").resolve())
    folder = f"docs/{run_id}"
    assert {f"{folder}/measurements.json", f"{folder}/verdict.json", f"{folder}/report.html"} <= set(result["files"])
    assert ".gitattributes" in result["files"]
    # The origin holds the branch at that commit; main and the user's checkout are as they were.
    origin = home / "origin.git"
    assert git("rev-parse", f"refs/heads/{result['branch']}", cwd=origin) == result["commit"]
    assert git("ls-tree", "--name-only", "main", cwd=origin) == "README.md"
    assert git("branch", "--show-current", cwd=home / "checkout") == "main"
    assert undocumented(artifacts_module, result) == []
    again = run_module(artifacts_module, args)
    assert (again["changed"], again["pushed"], again["commit"]) == (False, False, result["commit"])


def test_push_false_commits_locally_only(ended_run, tmp_path):
    state_dir, run_id = ended_run
    home = tmp_path / "home"
    args = {"repo": str(home / "checkout"), "run_dir": str(StateStore(state_dir).run_dir(run_id))}
    result = run_module(artifacts_module, {**args, "embedded_origin": True, "push": False})
    assert result["changed"] is True and result["pushed"] is False
    assert git("rev-parse", f"refs/heads/{result['branch']}", cwd=home / "checkout") == result["commit"]
    assert git("branch", "--list", result["branch"], cwd=home / "origin.git") == ""


def test_a_base_branch_the_remote_lacks_fails_naming_it(ended_run, tmp_path):
    state_dir, run_id = ended_run
    home = tmp_path / "home"
    args = {"repo": str(home / "checkout"), "run_dir": str(StateStore(state_dir).run_dir(run_id))}
    result = fail_module(artifacts_module, {**args, "embedded_origin": True, "base": "release"})
    assert (
        result["msg"]
        == f"origin/release does not exist in {(home / 'checkout').resolve()}: fetch it or set the base branch"
    )
