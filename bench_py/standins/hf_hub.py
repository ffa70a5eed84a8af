"""A Hugging Face Hub on loopback, serving a gated model repository the way the Hub's HTTP API
does, so that ``voxbench prefetch`` runs the real ``huggingface_hub`` download code here.

It answers what ``snapshot_download`` asks: the revision's info
(``GET /api/models/{repo}/revision/{rev}``), the file tree (``GET /api/models/{repo}/tree/{sha}``),
and each file (``HEAD``/``GET /{repo}/resolve/{sha}/{path}``, with ``X-Repo-Commit`` and
``ETag``). A gated repository refuses a request without the right ``Authorization: Bearer``
token with ``401`` and ``X-Error-Code: GatedRepo``, as the Hub does.

The default repository has the shape of Voxtral-4B-TTS-2603's (Mistral-format ``params.json``
naming the 20 preset voices, ``tekken.json``, ``consolidated.safetensors``, one voice embedding
per preset, a model card with its license) with tiny contents: no weights exist here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import struct
from dataclasses import dataclass, field

from aiohttp import web

log = logging.getLogger("voxbench.standin.hf-hub")

MODEL_CARD = """---
license: cc-by-nc-4.0
library_name: vllm
inference: false
extra_gated_description: voxbench stand-in of a gated repository
---
# Voxtral-4B-TTS-2603 (stand-in files: no weights)
"""


def _safetensors(tensors: dict[str, int]) -> bytes:
    """A valid safetensors file of float16 zeros (the header, then the data)."""
    header, offset = {}, 0
    for name, count in tensors.items():
        header[name] = {"dtype": "F16", "shape": [count], "data_offsets": [offset, offset + 2 * count]}
        offset += 2 * count
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def voxtral_shaped_files() -> dict[str, bytes]:
    from bench_py.standins.vllm_omni_face import VOXTRAL_VOICES

    params = {
        "dim": 16,
        "n_layers": 1,
        "vocab_size": 32,
        "multimodal": {"audio_tokenizer_args": {"voice": {name: i for i, name in enumerate(VOXTRAL_VOICES)}}},
    }
    files = {
        "README.md": MODEL_CARD.encode(),
        "params.json": json.dumps(params, indent=2).encode(),
        "tekken.json": json.dumps({"config": {"pattern": "stand-in"}, "vocab": []}).encode(),
        "consolidated.safetensors": _safetensors({"tok_embeddings.weight": 512}),
    }
    for name in VOXTRAL_VOICES:
        files[f"voice_embedding/{name}.pt"] = hashlib.sha256(name.encode()).digest() * 4
    return files


@dataclass
class Repository:
    repo_id: str
    files: dict[str, bytes]
    token: str | None  # gated: this token is needed
    sha: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + self.files[path])
        self.sha = digest.hexdigest()


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    def __init__(self, repository: Repository) -> None:
        self.repo = repository

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/models/{owner}/{name}/revision/{revision}", self.revision)
        app.router.add_get("/api/models/{owner}/{name}/tree/{revision}", self.tree)
        app.router.add_route("*", "/{owner}/{name}/resolve/{revision}/{path:.+}", self.resolve)
        app.router.add_get("/health", self.health)
        app.router.add_get("/voxbench/requests", self.requests)  # the stand-in's own: what it was asked
        return app

    async def requests(self, _request: web.Request) -> web.Response:
        return web.json_response(self.repo.requests)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "standin": True})

    def _check(self, request: web.Request) -> None:
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        # Who asked for what, and whether a token came (never its value).
        given = request.headers.get("Authorization", "")
        self.repo.requests.append(
            {"method": request.method, "path": request.path, "auth": "bearer" if given else "none"}
        )
        if repo_id != self.repo.repo_id:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "Repository not found"}),
                headers={"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"},
            )
        if self.repo.token is not None and given != f"Bearer {self.repo.token}":
            message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": message}),
                headers={"X-Error-Code": "GatedRepo", "X-Error-Message": message, "Content-Type": "application/json"},
            )
        revision = request.match_info["revision"]
        if revision not in ("main", self.repo.sha):
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"Invalid rev id: {revision}"}),
                headers={"X-Error-Code": "RevisionNotFound", "Content-Type": "application/json"},
            )

    async def revision(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response(
            {
                "id": self.repo.repo_id,
                "modelId": self.repo.repo_id,
                "sha": self.repo.sha,
                "private": False,
                "disabled": False,
                "gated": "manual" if self.repo.token else False,
                "siblings": [{"rfilename": path} for path in sorted(self.repo.files)],
                "tags": ["standin"],
            }
        )

    async def tree(self, request: web.Request) -> web.Response:
        self._check(request)
        entries = []
        for path in sorted(self.repo.files):
            data = self.repo.files[path]
            entry = {"type": "file", "oid": _git_blob_id(data), "size": len(data), "path": path}
            if path.endswith((".safetensors", ".pt")):  # stored in LFS on the Hub
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return web.json_response(entries)

    async def resolve(self, request: web.Request) -> web.Response:
        self._check(request)
        path = request.match_info["path"]
        if path not in self.repo.files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": self.repo.sha})
        data = self.repo.files[path]
        etag = hashlib.sha256(data).hexdigest() if path.endswith((".safetensors", ".pt")) else _git_blob_id(data)
        headers = {"X-Repo-Commit": self.repo.sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return web.Response(body=data, headers=headers, content_type="application/octet-stream")


def build_app(repo_id: str = "mistralai/Voxtral-4B-TTS-2603", token: str | None = None) -> web.Application:
    hub = Hub(Repository(repo_id, voxtral_shaped_files(), token))
    app = hub.app()
    app["hub"] = hub
    return app


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(prog="voxbench-standin-hf-hub", description=__doc__.split("\n\n")[0])
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8765)
    cli.add_argument("--repo", default="mistralai/Voxtral-4B-TTS-2603")
    cli.add_argument("--token-file", help="gate the repository: this token (in a file) is needed")
    args = cli.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    web.run_app(build_app(args.repo, token), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
