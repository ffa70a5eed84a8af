"""The listening page's server: 127.0.0.1 only, every URL behind a random session token.

Nothing it serves names an engine before the reveal: clips are opaque ids with identical format
and headers, and the page's text is the same whatever the mapping. Each answer is appended to the
scores file before the server replies, so a closed browser or a killed server loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from bench_py.judge import session as sessions

SERVER_FILE = "server.json"


def _page() -> str:
    return resources.files("bench_py.judge").joinpath("templates/listen.html").read_text(encoding="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def _error(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


class ListeningServer:
    def __init__(self, run_dir: Path, token: str | None = None, exit_after_reveal: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.session = sessions.load(self.run_dir)
        self.token = token or secrets.token_urlsafe(18)
        self.exit_after_reveal = exit_after_reveal
        self.done = asyncio.Event()
        self.verdict: dict[str, Any] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.match_info.get("token", ""), self.token)

    def _state(self, listener: str) -> dict[str, Any]:
        data = self.session.data
        return {
            "session": data["session"],
            "pairs": [{"pair": p["pair"], "a": p["a"], "b": p["b"], "text": p["text"]} for p in data["pairs"]],
            "reference": bool(data.get("reference")),
            "progress": sessions.progress(self.session, listener) if listener else None,
            "complete": sessions.complete(self.session),
            "revealed": self.session.revealed,
        }

    def _reveal_view(self, listener: str) -> dict[str, Any]:
        mapping = self.session.data["revealed_mapping"]
        answers = sessions.progress(self.session, listener)["answers"] if listener else {}

        def side(clip: str) -> dict[str, Any]:
            entry = mapping[clip]
            return {"label": entry["side"], "condition": entry["condition"], "score": answers.get(clip)}

        verdict = self.verdict or {}
        return {
            "pairs": [{"pair": p["pair"], "a": side(p["a"]), "b": side(p["b"])} for p in self.session.data["pairs"]],
            "verdict": verdict.get("verdict"),
            "reason": verdict.get("reason"),
            "statistics": verdict.get("statistics"),
            "mapping_sha256": self.session.data["mapping_sha256"],
            "abandoned": self.session.data.get("abandoned", False),
        }

    # -- handlers ----------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        return web.Response(text=_page(), content_type="text/html", headers={"Cache-Control": "no-store"})

    async def state(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        listener = request.query.get("listener", "")
        body = self._state(listener)
        if self.session.revealed:
            body["reveal"] = self._reveal_view(listener)
        return _json(body)

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
        if self.session.revealed:
            return _error("the session has been revealed; answers are closed", 409)
        try:
            body = await request.json()
            listener, pair, clip = str(body["listener"]), str(body["pair"]), str(body["clip"])
            score = body["score"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return _error("send JSON with listener, pair, clip and score")
        if not isinstance(score, int) or isinstance(score, bool):
            return _error("score must be an integer from 1 to 5")
        try:
            sessions.answer(self.session, listener, pair, clip, score)
        except sessions.SessionError as error:
            return _error(str(error))
        return _json(self._state(listener))

    async def reveal(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPNotFound()
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        listener = str(body.get("listener", ""))
        try:
            self.session = sessions.reveal(self.session, abandon=bool(body.get("abandon")))
        except sessions.SessionError as error:
            return _error(str(error), 409)
        from bench_py.run.report import refresh_verdict

        self.verdict = await asyncio.to_thread(refresh_verdict, self.run_dir)
        if self.exit_after_reveal:
            asyncio.get_running_loop().call_later(3.0, self.done.set)
        return _json({**self._state(listener), "reveal": self._reveal_view(listener)})

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
    """Serve until the reveal (plus a moment for the page to show it) or cancellation."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{bound}/s/{server.token}/"
    info = server.session.dir / SERVER_FILE
    fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:  # the URL carries the token: owner-only
        json.dump({"url": url, "port": bound, "pid": os.getpid()}, handle)
    announce(url)
    try:
        await server.done.wait()
    finally:
        info.unlink(missing_ok=True)
        await runner.cleanup()
