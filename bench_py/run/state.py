"""The run's state machine: states and transitions as data, persisted atomically per run id.

One JSON file per run on the host (``<state_dir>/runs/<run_id>/state.json``) says where the run
is, how it got there, and what voxbench changed on the host (started containers, a paused
co-tenant) so that recovery can undo it. A host-wide lock file names the run that holds the
host. Writes go to a temporary file that is fsynced and renamed over the old one: a reader
never sees half a state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from bench_py.clock import now_iso
from bench_py.files import atomic_write_json
from bench_py.processes import group_alive, pid_alive


def make_run_id(candidate: str, host: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    clean_host = "".join(ch if ch.isalnum() else "-" for ch in host.split(".")[0]).upper()
    return f"BENCHMARK-{candidate.upper()}-{clean_host}-{stamp}"


class State(StrEnum):
    PREFLIGHT = "PREFLIGHT"
    BASELINE = "BASELINE"
    STARTING = "STARTING"
    BENCHING = "BENCHING"
    TEARDOWN = "TEARDOWN"
    DONE = "DONE"
    ERROR_ABORTED = "ERROR_ABORTED"


TERMINAL = frozenset({State.DONE, State.ERROR_ABORTED})


@dataclass(frozen=True)
class Transition:
    number: int
    source: State
    target: State
    when: str


#: DESIGN.md's table, verbatim: the only moves a run can make.
TRANSITIONS: tuple[Transition, ...] = (
    Transition(1, State.PREFLIGHT, State.BASELINE, "every preflight check passed (and the decision rule was sealed)"),
    Transition(2, State.PREFLIGHT, State.ERROR_ABORTED, "a preflight check failed; nothing was started"),
    Transition(3, State.BASELINE, State.STARTING, "co-tenant baseline captured (then pause-gemma stops it, if chosen)"),
    Transition(4, State.BASELINE, State.ERROR_ABORTED, "co-tenant unreachable or already unhealthy"),
    Transition(5, State.STARTING, State.BENCHING, "an install path became ready and passed the audio sanity check"),
    Transition(6, State.STARTING, State.TEARDOWN, "no install path worked (every path's status and evidence recorded)"),
    Transition(7, State.STARTING, State.ERROR_ABORTED, "co-tenant gate tripped during start-up, or operator abort"),
    Transition(8, State.BENCHING, State.TEARDOWN, "timed loops finished"),
    Transition(
        9, State.BENCHING, State.ERROR_ABORTED, "co-tenant gate tripped, fatal engine failure, or operator abort"
    ),
    Transition(
        10,
        State.TEARDOWN,
        State.DONE,
        "engines verified gone, co-tenant restored and within 1.2x baseline, files written",
    ),
    Transition(
        11, State.TEARDOWN, State.ERROR_ABORTED, "removal could not be verified, or the co-tenant did not recover"
    ),
)
_BY_EDGE = {(t.source, t.target): t for t in TRANSITIONS}


class StateError(RuntimeError):
    """A run is not where an operation expects it; the message says where it is."""


class HostLockedError(StateError):
    """Another run holds the host."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"run {holder} holds this host; attach to it (voxbench attach) or wait for it to end")
        self.holder = holder


@dataclass
class RunState:
    run_id: str
    state: State = State.PREFLIGHT
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    history: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, Any] = field(
        default_factory=lambda: {"containers": [], "processes": [], "cotenant_paused": None}
    )
    reason: str | None = None
    phase: dict[str, Any] = field(default_factory=dict)  # live progress of the current phase

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        return cls(**{**data, "state": State(data["state"])})


def boot_id() -> str | None:
    """This boot of the host's kernel: a run recorded under another boot did not survive a reboot.
    (In a container it is the outer kernel's, which a restart of the container does not change.)"""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


#: /run is emptied at every boot (a tmpfs): a marker voxbench keeps there is gone after a restart,
#: of a machine or of a container host alike. setup.yml has systemd-tmpfiles make the directory at
#: boot for the bench user (roles/voxbench_runtime: voxbench_runtime_boot_dir).
BOOT_MARKER_DIR = Path("/run/voxbench")


def boot_marker(marker_dir: Path | None = None, create: bool = True) -> str | None:
    """This boot's marker: a random token in ``marker_dir/boot`` (default :data:`BOOT_MARKER_DIR`),
    made by the first run of the boot (``create``). None where nothing can be kept or read there."""
    marker_dir = marker_dir or BOOT_MARKER_DIR
    marker = marker_dir / "boot"
    with contextlib.suppress(OSError):
        return marker.read_text().strip() or None
    if not create or marker.exists():
        return None
    try:  # written aside, then linked into place: a reader never sees it empty
        marker_dir.mkdir(parents=True, exist_ok=True)
        aside = marker_dir / f".boot.{os.getpid()}"
        aside.write_text(secrets.token_hex(16) + "\n")
        aside.chmod(0o644)  # every user's runs read it, whatever the umask of the first
        try:
            os.link(aside, marker)
        except FileExistsError:  # another run of this boot made it first
            pass
        finally:
            aside.unlink()
    except OSError:
        return None
    return boot_marker(marker_dir, create=False)


def boot_marker_gone(marker_dir: Path | None = None) -> bool:
    """True only when the marker is known to be absent (a restart emptied /run); a marker that is
    there but cannot be read says nothing."""
    try:
        ((marker_dir or BOOT_MARKER_DIR) / "boot").stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


class StateStore:
    """Run states under one state directory, and the host lock."""

    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir).expanduser()

    def run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / "runs" / run_id

    def _path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "state.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock.json"

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        """Serialize read-modify-write of states and the lock between processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".mutex", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, run_id: str) -> RunState:
        try:
            return RunState.from_json(json.loads(self._path(run_id).read_text()))
        except FileNotFoundError:
            raise StateError(f"no run {run_id} under {self.root}") from None

    def holder(self) -> str | None:
        """The run id holding the host lock, if any."""
        try:
            return cast(str, json.loads(self.lock_path.read_text())["run_id"])
        except FileNotFoundError:
            return None

    def in_progress(self, run_id: str) -> bool:
        try:
            return not self.load(run_id).terminal
        except StateError:  # a lock naming a run that left no state is stale
            return False

    def create(self, run_id: str) -> RunState:
        """Start a run in PREFLIGHT and take the host lock (refused while another run holds it)."""
        with self._mutex():
            holder = self.holder()
            if holder is not None and holder != run_id and self.in_progress(holder):
                raise HostLockedError(holder)
            if self._path(run_id).exists():
                raise StateError(f"run {run_id} already exists")
            state = RunState(run_id)
            state.history.append({"to": str(State.PREFLIGHT), "at": state.created_at, "reason": "run created"})
            atomic_write_json(self._path(run_id), state.to_json())
            atomic_write_json(self.lock_path, {"run_id": run_id, "at": state.created_at, "pid": os.getpid()})
            return state

    def expect(self, run_id: str, state: State) -> RunState:
        current = self.load(run_id)
        if current.state != state:
            raise StateError(f"run {run_id} is in {current.state}, not {state}")
        return current

    def transition(self, run_id: str, target: State, reason: str) -> RunState:
        """Move a run along one of the table's edges; anything else is refused."""
        with self._mutex():
            current = self.load(run_id)
            edge = _BY_EDGE.get((current.state, target))
            if edge is None:
                raise StateError(f"run {run_id} cannot go from {current.state} to {target}")
            now = now_iso()
            current.history.append(
                {"from": str(current.state), "to": str(target), "transition": edge.number, "at": now, "reason": reason}
            )
            current.state, current.updated_at, current.phase = target, now, {}
            if target in TERMINAL:
                current.reason = reason
            atomic_write_json(self._path(run_id), current.to_json())
            if target in TERMINAL and self.holder() == run_id:
                self.lock_path.unlink(missing_ok=True)
            return current

    def update(
        self, run_id: str, *, changes: dict[str, Any] | None = None, phase: dict[str, Any] | None = None
    ) -> RunState:
        """Record what the run changed on the host, or its live progress."""
        with self._mutex():
            current = self.load(run_id)
            if changes:
                for key, value in changes.items():
                    if isinstance(current.changes.get(key), list):
                        if value not in current.changes[key]:
                            current.changes[key].append(value)
                    else:
                        current.changes[key] = value
            if phase is not None:
                current.phase = phase
            current.updated_at = now_iso()
            atomic_write_json(self._path(run_id), current.to_json())
            return current

    def wait_for_change(self, run_id: str, wait_s: float, poll_s: float = 0.2, progress_s: float = 0.0) -> RunState:
        """The run's state once it moves, or after ``wait_s``.

        A transition answers at once, and so does a run that has ended and written its files; a
        change of progress alone (a request timed) answers once ``progress_s`` has passed, so that a
        watcher showing a live line does not start a module per request on the host it measures.
        """
        import time

        started = time.monotonic()
        first = current = self.load(run_id)
        while True:
            if current.terminal and (current.changes.get("files_written") or not first.terminal):
                return current
            if current.state != first.state:
                return current
            waited = time.monotonic() - started
            if current.updated_at != first.updated_at and waited >= progress_s:
                return current
            if waited >= wait_s:
                return current
            time.sleep(min(poll_s, max(0.0, wait_s - waited)))
            current = self.load(run_id)

    def dispatcher_alive(self, state: RunState) -> bool | None:
        """Whether the process running the run's phases is still there (None: unknown)."""
        dispatcher = state.changes.get("dispatcher") or {}
        pid = dispatcher.get("pid")
        if not pid:
            return None
        if pid_alive(int(pid), dispatcher.get("pid_start")):
            return True
        if pid_alive(int(pid)):  # another process has the pid now: the run's group is long gone
            return False
        # The pane's shell leads the group the run's process belongs to: the run may outlive its shell.
        return group_alive(int(pid))

    @staticmethod
    def same_boot(state: RunState) -> bool:
        """False when the run was started under an earlier boot of this host: its kernel boot id
        differs, or the marker it recorded in /run is gone (a container host's restart changes no
        boot id). A marker that is there but cannot be read, or none recorded, leaves the boot id."""
        dispatcher = state.changes.get("dispatcher") or {}
        recorded_id = dispatcher.get("host_boot_id")
        if recorded_id is not None and recorded_id != boot_id():
            return False
        recorded_marker = dispatcher.get("host_boot_marker")
        if not recorded_marker or boot_marker_gone():
            return not recorded_marker
        current = boot_marker(create=False)
        return current is None or current == recorded_marker

    def latest_uncollected(self) -> str | None:
        """The newest ended run the controller has not fetched yet (its controller was lost)."""
        runs_dir = self.root / "runs"
        candidates = []
        for state_file in runs_dir.glob("*/state.json") if runs_dir.is_dir() else []:
            try:
                state = self.load(state_file.parent.name)
            except (StateError, ValueError, KeyError):
                continue
            if state.terminal and not state.changes.get("collected"):
                candidates.append((state.created_at, state.run_id))
        return max(candidates)[1] if candidates else None

    def summaries(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest runs on this host, newest first: id, state, progress, whether collected."""
        runs_dir = self.root / "runs"
        found: list[dict[str, Any]] = []
        for state_file in runs_dir.glob("*/state.json") if runs_dir.is_dir() else []:
            try:
                state = self.load(state_file.parent.name)
            except (StateError, ValueError, KeyError):
                continue
            found.append(
                {
                    "run_id": state.run_id,
                    "state": str(state.state),
                    "terminal": state.terminal,
                    "reason": state.reason,
                    "phase": state.phase,
                    "created_at": state.created_at,
                    "updated_at": state.updated_at,
                    "collected": bool(state.changes.get("collected")),
                    "dispatcher_alive": None if state.terminal else self.dispatcher_alive(state),
                }
            )
        return sorted(found, key=lambda s: s["created_at"], reverse=True)[:limit]

    def mark_collected(self, run_id: str) -> bool:
        """Record that the controller fetched this run; returns whether anything changed."""
        if self.load(run_id).changes.get("collected"):
            return False
        self.update(run_id, changes={"collected": now_iso()})
        return True


def mermaid_diagram() -> str:
    """The state machine drawn from :data:`TRANSITIONS` (docs/pipeline.md embeds this text)."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.PREFLIGHT}"]
    for t in TRANSITIONS:
        lines.append(f"    {t.source} --> {t.target}: {t.number}. {t.when}")
    lines += [f"    {State.DONE} --> [*]", f"    {State.ERROR_ABORTED} --> [*]"]
    return "\n".join(lines) + "\n"
