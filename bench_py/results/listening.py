"""A listening session from opening to verdict, for both of its callers: ``voxbench score`` on the
command line and the ``voxbench_score`` module that score.yml runs. The session and the page are
the judge's; the verdict they end in is the results'."""

from __future__ import annotations

import asyncio
import getpass
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_py.judge import session as sessions
from bench_py.judge.server import ListeningServer, serve
from bench_py.results.report import ReportError, refresh_verdict

Announce = Callable[[str, dict[str, str]], Any]


def default_listener() -> str:
    """The operator's own name, as a listener name."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", getpass.getuser()).lstrip("-_.")[:64]
    return name or "listener"


def derive_verdict(run_dir: Path) -> dict[str, Any]:
    """The verdict after a reveal; a run whose files cannot give one says why instead of failing
    the page (the answers are saved either way)."""
    try:
        return refresh_verdict(run_dir)
    except (ReportError, sessions.SessionError) as error:
        return {"verdict": None, "reason": f"the verdict could not be derived: {error}"}


def serve_until_revealed(
    run_dir: Path, port: int = 0, announce: Announce | None = None, keep_serving: bool = False
) -> dict[str, Any] | None:
    """Serve the page on 127.0.0.1 until the session is revealed (every listener finished, or the
    operator closed it); the verdict then, or None when the server stopped before a reveal."""
    server = ListeningServer(run_dir, derive_verdict, exit_after_reveal=not keep_serving)
    asyncio.run(serve(server, port, announce=announce or (lambda url, links: None)))
    return server.verdict


@dataclass(frozen=True)
class Outcome:
    """How a score run ended: the verdict (None when the page stopped before a reveal), whether
    the session is revealed, and whether this call changed it (registered, served, revealed)."""

    verdict: dict[str, Any] | None
    revealed: bool
    changed: bool


def score(
    run_dir: Path,
    listeners: Iterable[str] = (),
    *,
    port: int = 0,
    close: bool = False,
    announce: Announce | None = None,
) -> Outcome:
    """Open (or reopen) the run's session, register ``listeners`` (none given and none registered:
    the operator), then reveal now (``close``) or serve the page until the reveal. A session
    revealed already is not served again: its verdict is derived from the files."""
    session = sessions.create(run_dir)
    if session.revealed and not close:
        return Outcome(refresh_verdict(run_dir), revealed=True, changed=False)
    names = list(listeners)
    registered = [entry["name"] for entry in sessions.listeners(session) if not entry["simulated"]]
    if not names and not registered and not close:
        names = [default_listener()]
    for name in names:
        sessions.register(session, name)
    if close:
        sessions.reveal(session, by="operator")
        return Outcome(refresh_verdict(run_dir), revealed=True, changed=True)
    verdict = serve_until_revealed(run_dir, port, announce)
    return Outcome(verdict, revealed=sessions.load(run_dir).revealed, changed=True)
