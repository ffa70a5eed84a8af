"""Put the candidate's weights into the GPU host's Hugging Face cache before any run.

A first start of Voxtral otherwise downloads ~8 GB of gated weights inside the container, under
the co-tenant gate and against the ready timeout. ``voxbench prefetch`` (or setup.yml with
``voxbench_prefetch_enabled``) downloads them once with ``huggingface_hub`` into the cache that
2A mounts (``candidate.hf_cache_dir``); PREFLIGHT then checks they are there.

The token is read from its file (mode 0600) and handed to ``huggingface_hub`` as an argument:
never an environment variable, never a command line.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class PrefetchError(RuntimeError):
    """The weights could not be fetched; the message says why and what to do."""


def hub_cache(cache_dir: str) -> str:
    """``candidate.hf_cache_dir`` is what the container sees as ``HF_HOME``; the files live in ``hub/``."""
    return str(Path(cache_dir).expanduser() / "hub")


#: Written beside the model's cache folder once every file of a snapshot is in: a download cut
#: half-way leaves a snapshot folder that huggingface_hub's offline lookup still returns.
MANIFEST = "voxbench-prefetched.json"


def model_folder(model: str, cache_dir: str) -> Path:
    return Path(hub_cache(cache_dir)) / f"models--{model.replace('/', '--')}"


def cached_files(model: str, cache_dir: str, revision: str = "main") -> list[str]:
    """The model's files already in the cache (no network): the snapshot ``refs/<revision>`` points
    at, as huggingface_hub lays it out; empty when it is not there."""
    folder = model_folder(model, cache_dir)
    try:
        commit = (folder / "refs" / revision).read_text().strip()
    except OSError:
        return []
    snapshot = folder / "snapshots" / commit
    return sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())


def missing_files(model: str, cache_dir: str) -> list[str] | None:
    """What a cut download left out: blobs still ``.incomplete``, or files the prefetch manifest
    lists that are not in the snapshot. None: no manifest (the cache was filled some other way)."""
    folder = model_folder(model, cache_dir)
    partial = sorted(f"blobs/{p.name}" for p in (folder / "blobs").glob("*.incomplete"))
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return partial or None
    snapshot = folder / "snapshots" / str(manifest.get("commit"))
    return partial + [name for name in manifest.get("files", []) if not (snapshot / name).is_file()]


def read_token(token_file: str) -> str:
    path = Path(token_file).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        value = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise PrefetchError(f"cannot read the Hugging Face token file {path}: {error.strerror}") from None
    if mode & 0o077:
        raise PrefetchError(f"the token file {path} is readable by others (mode {mode:04o}); run chmod 600 {path}")
    if not value:
        raise PrefetchError(f"the token file {path} is empty")
    return value


def prefetch(
    model: str,
    cache_dir: str,
    token_file: str | None,
    endpoint: str | None = None,
    revision: str | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Download (or find) every file of ``model`` in the cache; what was there, what came, how long."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    before = set(cached_files(model, cache_dir))
    token = read_token(token_file) if token_file else None
    Path(hub_cache(cache_dir)).mkdir(parents=True, exist_ok=True)
    progress(f"fetching {model} into {cache_dir} ({len(before)} files already there)")
    started = time.monotonic()
    try:
        folder = snapshot_download(
            model,
            revision=revision,
            cache_dir=hub_cache(cache_dir),
            token=token or False,  # False: never fall back to a token from the environment or disk
            endpoint=endpoint,
        )
    except GatedRepoError:
        raise PrefetchError(
            f"{model} is gated: accept its terms on the Hub with the account whose token is in {token_file}"
        ) from None
    except RepositoryNotFoundError:
        raise PrefetchError(f"{model} is not on the Hub (or the token cannot see it)") from None
    except (HfHubHTTPError, OSError) as error:
        raise PrefetchError(f"the download of {model} failed: {type(error).__name__}: {error}") from None
    files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
    size = sum(os.path.getsize(Path(folder) / name) for name in files)
    manifest = {"model": model, "commit": Path(folder).name, "files": files, "bytes": size}
    (model_folder(model, cache_dir) / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return {
        "model": model,
        "cache_dir": cache_dir,
        "snapshot": str(folder),
        "files": files,
        "bytes": size,
        "downloaded": sorted(set(files) - before),
        "seconds": round(time.monotonic() - started, 2),
    }
