"""The benchmark branch: a run's files and WAVs committed, WAVs in git-lfs, pushed for review.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_py.run import files

LFS_CONFIG = (
    "-c", "filter.lfs.clean=git-lfs clean -- %f",
    "-c", "filter.lfs.smudge=git-lfs smudge -- %f",
    "-c", "filter.lfs.process=git-lfs filter-process",
    "-c", "filter.lfs.required=true",
)  # fmt: skip
LFS_PATTERN = "docs/*-bench-samples-*/**/*.wav filter=lfs diff=lfs merge=lfs -text"
RUN_ID_STAMP = re.compile(r"-(\d{8}-\d{6})$")
RUN_FILES = {  # run directory name -> suffix after docs/<run_id>
    files.FILE_NAMES["measurements"]: ".json",
    files.FILE_NAMES["verdict"]: ".verdict.json",
    files.FILE_NAMES["scores"]: ".scores.jsonl",
    files.FILE_NAMES["corrections"]: ".corrections.jsonl",
    "report.html": ".report.html",
    "proxies.json": ".proxies.json",
}


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


def branch_name(candidate: str, run_id: str) -> str:
    """``<candidate>-bench-<YYYYMMDD-HHMMSS>`` from the run id's stamp (the same run, the same branch)."""
    match = RUN_ID_STAMP.search(run_id)
    if not match:
        raise ArtifactsError(f"run id {run_id!r} carries no YYYYMMDD-HHMMSS stamp")
    slug = re.sub(r"[^a-z0-9]+", "-", candidate.lower()).strip("-") or "candidate"
    return f"{slug}-bench-{match.group(1)}"


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


def _stage(worktree: Path, run_dir: Path, run_id: str, samples_dir: str, summary: str) -> list[str]:
    docs = worktree / "docs"
    docs.mkdir(exist_ok=True)
    written = []
    for name, suffix in RUN_FILES.items():
        source = run_dir / name
        if source.is_file():
            shutil.copyfile(source, docs / f"{run_id}{suffix}")
            written.append(f"docs/{run_id}{suffix}")
    samples = docs / samples_dir
    wavs = sorted((run_dir / "wavs").rglob("*.wav")) if (run_dir / "wavs").is_dir() else []
    for wav in wavs:
        target = samples / wav.relative_to(run_dir / "wavs")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wav, target)
        written.append(str(target.relative_to(worktree)))
    samples.mkdir(parents=True, exist_ok=True)
    if (run_dir / "reference.wav").is_file():  # the confirmed clip both sides cloned from
        shutil.copyfile(run_dir / "reference.wav", samples / "reference.wav")
        written.append(f"docs/{samples_dir}/reference.wav")
    (samples / "SUMMARY.md").write_text(summary, encoding="utf-8")
    written.append(f"docs/{samples_dir}/SUMMARY.md")
    attributes = worktree / ".gitattributes"
    existing = attributes.read_text(encoding="utf-8") if attributes.exists() else ""
    if LFS_PATTERN not in existing.splitlines():
        prefix = existing if not existing or existing.endswith("\n") else existing + "\n"
        note = "# voxbench: benchmark sample WAVs in git-lfs"
        attributes.write_text(f"{prefix}{note}\n{LFS_PATTERN}\n", encoding="utf-8")
        written.append(".gitattributes")
    return written


def publish(
    repo: Path,
    run_dir: Path,
    *,
    candidate: str,
    summary: str,
    verdict: str,
    remote: str = "origin",
    base: str = "main",
    push: bool = True,
) -> Publication:
    """Commit the run's files on its benchmark branch (a new commit only when something changed)."""
    repo, run_dir = Path(repo).expanduser().resolve(), Path(run_dir).resolve()
    if not (repo / ".git").exists():
        raise ArtifactsError(f"{repo} is not a git checkout (no .git)")
    run_id = run_dir.name
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
        stamp = RUN_ID_STAMP.search(run_id).group(1)  # type: ignore[union-attr]
        written = _stage(worktree, run_dir, run_id, f"{branch.rsplit('-bench-', 1)[0]}-bench-samples-{stamp}", summary)
        _git([*LFS_CONFIG, "add", "--", *written], worktree, env=skip)
        changed = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=worktree, check=False).returncode != 0
        if changed:
            message = f"{candidate} bench {stamp}: verdict {verdict}\n\nRun {run_id}, files written by voxbench.\n"
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
