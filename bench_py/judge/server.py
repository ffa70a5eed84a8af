"""The listening page's server: 127.0.0.1 only, every URL behind a random session token, and each
registered listener behind a key of their own.

Nothing it serves names an engine before the reveal: clips are opaque ids with identical format
and headers, and the page's text is the same whatever the mapping. A listener's key (in the
fragment of their personal link, sent back as the ``X-Listener-Key`` header) is the only way to
read or give answers, and it shows that listener's answers alone. No listener can reveal: the
reveal happens when every registered listener has finished, or when the operator closes the
session from the command line (``voxbench score RUN --close``), which this server notices.

Each answer is appended to the scores file before the server replies, so a closed browser or a
killed server loses nothing acknowledged. Keys are derived from a secret kept in
``scoring/server.json`` (0600), so ``voxbench score RUN --listener NAME`` can hand a new listener
a link while the page is served.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from bench_py.judge import session as sessions
from bench_py.processes import pid_alive

SERVER_FILE = "server.json"
KEY_HEADER = "X-Listener-Key"
WATCH_INTERVAL_S = 0.5
EXIT_DELAY_S = 3.0


def _page() -> str:
    return resources.files("bench_py.judge").joinpath("templates/listen.html").read_text(encoding="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def _error(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


def listener_key(secret: str, name: str) -> str:
    """A listener's key: derived from the server's secret, so another process holding it (the
    operator's command line) can hand out a link without asking the server."""
    return hmac.new(secret.encode(), f"listener:{name}".encode(), hashlib.sha256).hexdigest()[:32]


def listener_link(base_url: str, secret: str, name: str) -> str:
    return f"{base_url}#key={listener_key(secret, name)}"


def running_server(run_dir: Path) -> dict[str, Any] | None:
    """The page's server for this run, when one is serving (its ``server.json``, pid alive)."""
    path = Path(run_dir) / sessions.SCORING_DIR / SERVER_FILE
    try:
        info = json.loads(path.read_text())
        alive = pid_alive(int(info["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if alive else None


class ListeningServer:
    def __init__(
        self,
        run_dir: Path,
        derive_verdict: Callable[[Path], dict[str, Any]],
        token: str | None = None,
        exit_after_reveal: bool = True,
    ) -> None:
        # The verdict is the results' to derive (bench_py.results.report): the caller hands that in,
        # so the listening room never reaches up into the run wing.
        self.derive_verdict = derive_verdict
        self.run_dir = Path(run_dir)
        self.session = sessions.load(self.run_dir)
        self.token = token or secrets.token_urlsafe(18)
        self.secret = secrets.token_hex(32)
        self.exit_after_reveal = exit_after_reveal
        self.done = asyncio.Event()
        self.verdict: dict[str, Any] | None = None
        self._closing = False

    # -- helpers -----------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.match_info.get("token", ""), self.token)

    def _listener(self, request: web.Request) -> str | None:
        """The registered real listener whose key the request carries (listeners.json is read
        again each time: the operator may register someone while the page is served)."""
        key = request.headers.get(KEY_HEADER, "")
        if not key:
            return None
        for entry in sessions.listeners(self.session):
            name: str = entry["name"]
            if not entry["simulated"] and secrets.compare_digest(key, listener_key(self.secret, name)):
                return name
        return None

    def _refresh(self) -> None:
        self.session = sessions.load(self.run_dir)

    def _state(self, listener: str) -> dict[str, Any]:
        data = self.session.data
        progress = sessions.progress(self.session, listener)
        body = {
            "session": data["session"],
            "listener": listener,
            "pairs": [{"pair": p["pair"], "a": p["a"], "b": p["b"], "text": p["text"]} for p in data["pairs"]],
            "reference": bool(data.get("reference")),
            "progress": progress,
            "finished": progress["pairs_done"] == progress["pairs"],
            # Shown once the verdict is derived, so every page shows the same, whole reveal.
            "revealed": self.session.revealed and self.verdict is not None,
        }
        if body["revealed"]:
            body["reveal"] = self._reveal_view(progress["answers"])
        return body

    def _reveal_view(self, answers: dict[str, int]) -> dict[str, Any]:
        mapping = self.session.data["revealed_mapping"]

        def side(clip: str) -> dict[str, Any]:
            entry = mapping[clip]
            return {"label": entry["side"], "condition": entry["condition"], "score": answers.get(clip)}

        verdict = self.verdict or {}
        statistics = verdict.get("statistics") or {}
        return {
            "pairs": [{"pair": p["pair"], "a": side(p["a"]), "b": side(p["b"])} for p in self.session.data["pairs"]],
            "verdict": verdict.get("verdict"),
            "reason": verdict.get("reason"),
            "listeners": statistics.get("listeners"),
            "alpha_ordinal": statistics.get("alpha_ordinal"),
            "mapping_sha256": self.session.data["mapping_sha256"],
            "revealed_by": self.session.data.get("revealed_by"),
            "abandoned": self.session.data.get("abandoned", False),
        }

    async def _revealed(self) -> None:
        """Derive the verdict once, then stop a moment later (the pages show the reveal)."""
        if self._closing:
            return
        self._closing = True
        self.verdict = await asyncio.to_thread(self.derive_verdict, self.run_dir)
        if self.exit_after_reveal:
            asyncio.get_running_loop().call_later(EXIT_DELAY_S, self.done.set)

    async def watch(self) -> None:
        """Notice a reveal made elsewhere (the operator's ``--close``)."""
        while not self.done.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                self._refresh()
            except (OSError, ValueError):
                continue  # being rewritten: look again
            if self.session.revealed:
                await self._revealed()

    # -- handlers ----------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        return web.Response(text=_page(), content_type="text/html", headers={"Cache-Control": "no-store"})

    async def state(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        listener = self._listener(request)
        if listener is None:
            return _error("this link carries no listener key: open the personal link the operator gave you", 403)
        self._refresh()
        return _json(self._state(listener))

    async def clip(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        name = request.match_info["clip"]
        path = self.run_dir / "reference.wav" if name == "reference" else None
        if path is None:
            try:
                path = self.session.clip_path(name)
            except sessions.SessionError:
                raise web.HTTPNotFound() from None
        if not path.is_file():
            raise web.HTTPNotFound()
        # Bytes, not a file response: no Last-Modified or ETag that could differ between engines.
        return web.Response(body=path.read_bytes(), content_type="audio/wav", headers={"Cache-Control": "no-store"})

    async def answer(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
            body = None
        listener = self._listener(request)
        given = body or {}
        try:
            if listener is None:
                raise sessions.refuse(
                    self.session,
                    "no registered listener's key: open the personal link the operator gave you",
                    403,
                    {**given, "listener": None},
                )
            if body is None:
                reason = "send JSON with session, pair, clip and score"
                raise sessions.refuse(self.session, reason, 400, {"listener": listener})
            sessions.answer(
                self.session,
                listener,
                given.get("pair"),
                given.get("clip"),
                given.get("score"),
                session_id=given.get("session", self.session.data["session"]),
            )
        except sessions.RefusedAnswer as error:
            return _error(str(error), error.status)
        self._refresh()
        if not self.session.revealed and sessions.everyone_finished(self.session):
            try:
                self.session = sessions.reveal(self.session, by="listeners")
            except sessions.SessionError as error:
                return _error(f"saved, but the session could not be revealed: {error}", 500)
            await self._revealed()
        return _json(self._state(listener))

    async def reveal(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        return _error(
            "a listener cannot reveal: the session is revealed when every registered listener has "
            f"finished, or when the operator closes it (voxbench score {self.run_dir} --close)",
            403,
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/s/{token}/", self.page),
                web.get("/s/{token}/api/state", self.state),
                web.get("/s/{token}/clip/{clip}.wav", self.clip),
                web.post("/s/{token}/api/answer", self.answer),
                web.post("/s/{token}/api/reveal", self.reveal),
            ]
        )
        return app


async def serve(server: ListeningServer, port: int = 0, announce: Any = print) -> None:
    """Serve until the reveal (plus a moment for the pages to show it) or cancellation.
    ``announce`` receives the base URL and each registered listener's personal link."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]  # (host, port) of the one socket the site listens on
    url = f"http://127.0.0.1:{bound}/s/{server.token}/"
    links = {
        e["name"]: listener_link(url, server.secret, e["name"])
        for e in sessions.listeners(server.session)
        if not e["simulated"]
    }
    info = server.session.dir / SERVER_FILE
    fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:  # the URL carries the token, the secret makes keys: owner-only
        json.dump({"url": url, "port": bound, "pid": os.getpid(), "secret": server.secret, "links": links}, handle)
    announce(url, links)
    watcher = asyncio.create_task(server.watch())
    try:
        if server.session.revealed:
            await server._revealed()
        await server.done.wait()
    finally:
        watcher.cancel()
        info.unlink(missing_ok=True)
        await runner.cleanup()
