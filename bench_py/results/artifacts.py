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

from bench_py.files import DISK_FULL_ERRNOS, DISK_FULL_WORDS

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


class PublishDiskFull(ArtifactsError):
    """The disk under the checkout (or the temporary worktree) filled up while publishing. Nothing
    was pushed, the benchmark branch is as it was (a branch this call created is removed again),
    and the run's files are untouched: free space and publish again."""


class _GitFailed(ArtifactsError):
    """A git command failed (rather than a check of voxbench's own)."""


class _GitNoSpace(_GitFailed):
    """A git step said "No space left on device" (turned into :class:`PublishDiskFull`)."""


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
        # Git's messages in English: a full disk is recognised by what it says.
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        full = [line for line in said if any(words in line for words in DISK_FULL_WORDS)]
        words = [arg for index, arg in enumerate(args) if arg != "-c" and (index == 0 or args[index - 1] != "-c")]
        failed = f"git {' '.join(words[:3])} failed in {cwd}: {(full or said)[-1] if said else result.returncode}"
        raise (_GitNoSpace if full else _GitFailed)(failed)
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
        try:
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                shutil.copyfile(source, target)
        except OSError as error:  # a failed copy names its source: name the file that could not be written
            raise OSError(error.errno, error.strerror, str(target)) from None
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
    try:
        return _commit_and_push(repo, run_id, public, branch, candidate, verdict, sealed, remote, base, push)
    except PublishDiskFull:
        raise
    except (OSError, ArtifactsError) as error:
        if not _is_disk_full(repo, error):
            raise
        raise _disk_full(repo, error) from None


def _is_disk_full(repo: Path, error: BaseException) -> bool:
    """Whether a full disk stopped a step. Git does not always say so (a commit whose message file
    the disk refused is "aborted due to an empty commit message"), so a disk left without room
    when a step failed counts too; asked before anything is cleaned up, which frees space."""
    if isinstance(error, PublishDiskFull | _GitNoSpace):
        return True
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(error, OSError | _GitFailed) and _out_of_room(repo)


def _disk_full(repo: Path, error: BaseException) -> PublishDiskFull:
    """The error for a publication a full disk cut short: where, what is free, what to do next."""
    temp = Path(tempfile.gettempdir())
    places = [repo] if _same_disk(repo, temp) else [repo, temp]
    free = "; ".join(f"{shutil.disk_usage(place).free / (1 << 20):.1f} MiB free under {place}" for place in places)
    if isinstance(error, OSError):
        said = f"{error.strerror} writing {error.filename}" if error.filename else str(error.strerror)
    else:
        said = str(error) if DISK_FULL_WORDS[0] in str(error) else f"{DISK_FULL_WORDS[0]}: {error}"
    return PublishDiskFull(
        f"the disk filled up while publishing ({said}; {free}; the temporary worktree is made "
        f"under {temp}). Nothing was pushed, the benchmark branch is as it was and the run's files are "
        "untouched: free some space there and publish the run again"
    )


#: Less than this free under the checkout or the temporary directory after a failed git step: a full disk.
LOW_SPACE_BYTES = 1 << 20


def _out_of_room(repo: Path) -> bool:
    return any(shutil.disk_usage(place).free < LOW_SPACE_BYTES for place in (repo, Path(tempfile.gettempdir())))


def _same_disk(one: Path, other: Path) -> bool:
    try:
        return one.stat().st_dev == other.stat().st_dev
    except OSError:
        return False


def _commit_and_push(
    repo: Path,
    run_id: str,
    public: Mapping[str, Path | bytes],
    branch: str,
    candidate: str,
    verdict: str,
    sealed: bool,
    remote: str,
    base: str,
    push: bool,
) -> Publication:
    _git(["fetch", "--quiet", remote], repo)
    if _ref_exists(repo, f"refs/heads/{branch}"):
        start, create = branch, False
    elif _ref_exists(repo, f"refs/remotes/{remote}/{branch}"):
        start, create = f"{remote}/{branch}", True
    elif _ref_exists(repo, f"refs/remotes/{remote}/{base}"):
        start, create = f"{remote}/{base}", True
    else:
        raise ArtifactsError(f"{remote}/{base} does not exist in {repo}: fetch it or set the base branch")
    start_commit = _git(["rev-parse", "--verify", f"{start}^{{commit}}"], repo)
    lfs_tmp = (repo / _git(["rev-parse", "--git-common-dir"], repo) / "lfs" / "tmp").resolve()
    lfs_tmp_before = _files(lfs_tmp)
    worktree = Path(tempfile.mkdtemp(prefix="voxbench-artifacts-"))
    # Existing LFS files on the base branch are not needed here: skip downloading them.
    skip = {"GIT_LFS_SKIP_SMUDGE": "1"}
    done = False
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
                # The LFS objects first: the remote never gets a commit whose WAVs it lacks.
                _git(["lfs", "push", remote, branch], repo)
                _git(["push", "--quiet", remote, f"refs/heads/{branch}:refs/heads/{branch}"], repo)
                pushed = True
        done = True
        return Publication(branch, commit, changed, pushed, written, str(repo))
    except (OSError, ArtifactsError) as error:
        if _is_disk_full(repo, error):  # now, while the space the step needed is still taken
            # git-lfs leaves the object it was writing, half there, in its temporary directory.
            for partial in _files(lfs_tmp) - lfs_tmp_before:
                partial.unlink(missing_ok=True)
            raise _disk_full(repo, error) from None
        raise
    finally:
        _git(["worktree", "remove", "--force", str(worktree)], repo, check=False)
        shutil.rmtree(worktree, ignore_errors=True)
        _git(["worktree", "prune"], repo, check=False)
        if not done and create:
            _drop_if_unmoved(repo, branch, start_commit)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()} if folder.is_dir() else set()


def _drop_if_unmoved(repo: Path, branch: str, start_commit: str) -> None:
    """Remove a branch this call created when no commit landed on it (a publication cut short):
    the next attempt starts it afresh rather than from a leftover."""
    head = _git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], repo, check=False)
    if head == start_commit:
        _git(["branch", "--quiet", "-D", branch], repo, check=False)


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
