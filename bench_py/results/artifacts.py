"""The benchmark branch: a run directory committed under ``docs/<run id>/``, WAVs in git-lfs,
pushed for review.

What goes there is decided by :mod:`bench_py.results.publish` (sealed before the listening session's
reveal, whole after it); this module only commits it. The branch holds a run directory, so
``voxbench report docs/<run id>`` recomputes the verdict on any clone.

Works in the user's own checkout with its existing remote and credentials (voxbench stores none
and changes no git configuration): the branch is built in a separate, temporary worktree from
``<remote>/<base>``, so the user's checkout and current branch are never touched and nothing is
ever committed to the base branch. LFS filters are passed per command (``-c``), and LFS objects
are pushed explicitly, so no hook or ``git lfs install`` is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LFS_CONFIG = (
    "-c", "filter.lfs.clean=git-lfs clean -- %f",
    "-c", "filter.lfs.smudge=git-lfs smudge -- %f",
    "-c", "filter.lfs.process=git-lfs filter-process",
    "-c", "filter.lfs.required=true",
)  # fmt: skip
LFS_PATTERN = "docs/BENCHMARK-*/**/*.wav filter=lfs diff=lfs merge=lfs -text"
RUN_ID_STAMP = re.compile(r"-(\d{8}-\d{6})$")
SAFE_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class ArtifactsError(RuntimeError):
    """A git step failed; the message names the command and what git said."""


@dataclass
class Publication:
    branch: str
    commit: str
    committed: bool  # False: the branch already held exactly these files
    pushed: bool
    files: list[str] = field(default_factory=list)
    repo: str = ""


def run_stamp(run_id: str) -> str:
    """The run id's ``YYYYMMDD-HHMMSS`` stamp."""
    match = RUN_ID_STAMP.search(run_id)
    if not match:
        raise ArtifactsError(f"run id {run_id!r} carries no YYYYMMDD-HHMMSS stamp")
    return match.group(1)


def branch_name(candidate: str, run_id: str) -> str:
    """``<candidate>-bench-<YYYYMMDD-HHMMSS>`` from the run id's stamp (the same run, the same branch)."""
    slug = re.sub(r"[^a-z0-9]+", "-", candidate.lower()).strip("-") or "candidate"
    return f"{slug}-bench-{run_stamp(run_id)}"


def _git(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    command = ["git", *args]
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise ArtifactsError(f"git {' '.join(args[:3])} failed in {cwd}: {said[-1] if said else result.returncode}")
    return result.stdout.strip()


def _ref_exists(repo: Path, ref: str) -> bool:
    return (
        subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", ref], cwd=repo, capture_output=True, check=False
        ).returncode
        == 0
    )


def _identity(repo: Path) -> list[str]:
    """The user's identity when git has one; otherwise voxbench's, for this commit only."""
    if _git(["config", "user.email"], repo, check=False):
        return []
    return ["-c", "user.name=voxbench", "-c", "user.email=voxbench@localhost"]


def _stage(worktree: Path, run_id: str, public: Mapping[str, Path | bytes]) -> list[str]:
    """Write the published files under ``docs/<run_id>/`` and the LFS line; returns what was written."""
    folder = worktree / "docs" / run_id
    written = []
    for relative, source in sorted(public.items()):
        if not SAFE_PATH.match(relative) or ".." in relative.split("/"):
            raise ArtifactsError(f"refusing to publish {relative!r}: not a plain relative path")
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        written.append(f"docs/{run_id}/{relative}")
    attributes = worktree / ".gitattributes"
    existing = attributes.read_text(encoding="utf-8") if attributes.exists() else ""
    if LFS_PATTERN not in existing.splitlines():
        prefix = existing if not existing or existing.endswith("\n") else existing + "\n"
        note = "# voxbench: benchmark WAVs in git-lfs"
        attributes.write_text(f"{prefix}{note}\n{LFS_PATTERN}\n", encoding="utf-8")
        written.append(".gitattributes")
    return written


def publish(
    repo: Path,
    run_id: str,
    public: Mapping[str, Path | bytes],
    *,
    candidate: str,
    verdict: str,
    sealed: bool,
    remote: str = "origin",
    base: str = "main",
    push: bool = True,
) -> Publication:
    """Commit ``public`` (paths relative to the run directory -> file or bytes) under
    ``docs/<run_id>/`` on the run's benchmark branch; a new commit only when something changed."""
    repo = Path(repo).expanduser().resolve()
    if not (repo / ".git").exists():
        raise ArtifactsError(f"{repo} is not a git checkout (no .git)")
    branch = branch_name(candidate, run_id)
    if branch == base:
        raise ArtifactsError(f"refusing to commit on the base branch {base!r}")
    _git(["fetch", "--quiet", remote], repo)
    if _ref_exists(repo, f"refs/heads/{branch}"):
        start, create = branch, False
    elif _ref_exists(repo, f"refs/remotes/{remote}/{branch}"):
        start, create = f"{remote}/{branch}", True
    elif _ref_exists(repo, f"refs/remotes/{remote}/{base}"):
        start, create = f"{remote}/{base}", True
    else:
        raise ArtifactsError(f"{remote}/{base} does not exist in {repo}: fetch it or set the base branch")
    worktree = Path(tempfile.mkdtemp(prefix="voxbench-artifacts-"))
    # Existing LFS files on the base branch are not needed here: skip downloading them.
    skip = {"GIT_LFS_SKIP_SMUDGE": "1"}
    try:
        add = ["worktree", "add", "--quiet"]
        add += ["--no-track", "-b", branch, str(worktree), start] if create else [str(worktree), branch]
        _git([*LFS_CONFIG, *add], repo, env=skip)
        stamp = run_stamp(run_id)
        written = _stage(worktree, run_id, public)
        _git([*LFS_CONFIG, "add", "--", *written], worktree, env=skip)
        changed = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=worktree, check=False).returncode != 0
        if changed:
            state = "sealed for blind listening" if sealed else "complete"
            message = (
                f"{candidate} bench {stamp}: verdict {verdict} ({state})\n\n"
                f"Run {run_id}, files written by voxbench under docs/{run_id}/.\n"
            )
            _git([*_identity(repo), *LFS_CONFIG, "commit", "--quiet", "-m", message], worktree, env=skip)
        commit = _git(["rev-parse", "HEAD"], worktree)
        pushed = False
        if push:
            remote_head = _git(["ls-remote", remote, f"refs/heads/{branch}"], repo).split("\t")[0]
            if remote_head != commit:
                _git(["lfs", "push", remote, branch], repo)
                _git(["push", "--quiet", remote, f"refs/heads/{branch}:refs/heads/{branch}"], repo)
                pushed = True
        return Publication(branch, commit, changed, pushed, written, str(repo))
    finally:
        _git(["worktree", "remove", "--force", str(worktree)], repo, check=False)
        shutil.rmtree(worktree, ignore_errors=True)
        _git(["worktree", "prune"], repo, check=False)


def ensure_embedded_origin(root: Path) -> Path:
    """The embedded default's "GitHub": a bare repository with a main branch, and a checkout of
    it with ``origin`` pointing there. Idempotent; returns the checkout."""
    root = Path(root)
    origin, checkout = root / "origin.git", root / "checkout"
    if not (origin / "HEAD").exists():
        origin.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", "-b", "main", str(origin)], root)
    if not (checkout / ".git").exists():
        _git(["clone", "--quiet", origin.as_uri(), str(checkout)], root)
        if not _ref_exists(checkout, "refs/remotes/origin/main"):
            (checkout / "README.md").write_text("# services\n\nThe user's repository (voxbench's embedded stand-in).\n")
            ident = ["-c", "user.name=voxbench", "-c", "user.email=voxbench@localhost"]
            _git(["checkout", "--quiet", "-b", "main"], checkout)
            _git(["add", "README.md"], checkout)
            _git([*ident, "commit", "--quiet", "-m", "Initial commit"], checkout)
            _git(["push", "--quiet", "origin", "main"], checkout)
    return checkout
