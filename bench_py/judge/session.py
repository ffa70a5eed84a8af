"""A blind listening session: opaque clips, a sealed mapping, append-only answers, the reveal.

Layout under ``<run>/scoring/``:

- ``clips/<id>.wav`` — every take re-encoded identically (PCM16 mono 24 kHz, EBU R128 loudness,
  metadata stripped, one modification time), named by random ids;
- ``session.json`` — public: pairs (ids only), the mapping's salted sha256, the rule's sha256;
  after the reveal also the mapping itself;
- ``sealed.json`` (0600, never served) — the CSPRNG seed, the salt and the mapping, until the reveal.

Answers go to the run's ``scores.jsonl`` (validated, fsynced per answer).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_py.run import files
from bench_py.run.state import atomic_write_json

SCORING_DIR = "scoring"
SESSION = "session.json"
SEALED = "sealed.json"
CLIP_RATE = 24000
LOUDNESS_LUFS = -23.0
CLIP_MTIME = 946684800  # 2000-01-01: every clip looks the same age


class SessionError(ValueError):
    """The session cannot be created, answered or revealed; the message says why."""


@dataclass(frozen=True)
class Session:
    run_dir: Path
    data: dict[str, Any]

    @property
    def dir(self) -> Path:
        return self.run_dir / SCORING_DIR

    @property
    def scores_path(self) -> Path:
        return self.run_dir / files.FILE_NAMES["scores"]

    @property
    def revealed(self) -> bool:
        return "revealed_mapping" in self.data

    def clip_path(self, clip_id: str) -> Path:
        if clip_id not in self.clip_ids():
            raise SessionError(f"no clip {clip_id!r} in this session")
        return self.dir / "clips" / f"{clip_id}.wav"

    def clip_ids(self) -> set[str]:
        return {c for p in self.data["pairs"] for c in (p["a"], p["b"])}

    def pair(self, pair_id: str) -> dict[str, Any]:
        for pair in self.data["pairs"]:
            if pair["pair"] == pair_id:
                return pair
        raise SessionError(f"no pair {pair_id!r} in this session")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def mapping_digest(salt: str, mapping: dict[str, Any]) -> str:
    payload = json.dumps({"salt": salt, "mapping": mapping}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def normalize_clip(source: Path, target: Path) -> None:
    """Re-encode one take so that no byte but the audio differs between engines."""
    command = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source),
        "-af", f"loudnorm=I={LOUDNESS_LUFS:g}:TP=-2:LRA=11", "-ar", str(CLIP_RATE), "-ac", "1",
        "-c:a", "pcm_s16le", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        str(target),
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SessionError("ffmpeg is missing: install it (apt-get install ffmpeg)") from None
    except subprocess.CalledProcessError as error:
        raise SessionError(f"ffmpeg could not normalize {source.name}: {error.stderr.strip()[-300:]}") from None
    os.utime(target, (CLIP_MTIME, CLIP_MTIME))


def _takes(run_dir: Path, measurements: dict[str, Any]) -> dict[tuple[int, str], dict[str, str]]:
    """(utterance, condition) -> {side: wav path relative to the run} for takes both sides saved,
    the incumbent's deferred takes (``voxbench baseline resume``) included."""
    from bench_py.measure import deferred

    takes: dict[tuple[int, str], dict[str, str]] = {}
    for side, records in ((measurements.get("bench") or {}).get("records") or {}).items():
        for record in records:
            if record.get("wav") and not record.get("warmup"):
                takes.setdefault((record["utterance"], record["condition"]), {}).setdefault(side, record["wav"])
    for (utterance, condition), record in deferred.done(run_dir).items():
        takes.setdefault((utterance, condition), {}).setdefault("incumbent", record["wav"])
    return {key: sides for key, sides in takes.items() if {"candidate", "incumbent"} <= set(sides)}


def _counterbalanced(rng: random.Random, count: int) -> list[str]:
    """Which engine plays A in each of ``count`` pairs: each is A in half of them (a coin decides
    the odd one), in a random order. Independent coin flips would let one engine be A throughout
    a short session, and listeners favour one position."""
    firsts = ["candidate", "incumbent"] * (count // 2)
    if count % 2:
        firsts.append(rng.choice(["candidate", "incumbent"]))
    rng.shuffle(firsts)
    return firsts


def create(run_dir: Path, *, force: bool = False) -> Session:
    """Build the blind session of a collected run (idempotent: an existing one is returned)."""
    run_dir = Path(run_dir)
    scoring = run_dir / SCORING_DIR
    if (scoring / SESSION).is_file() and not force:
        return load(run_dir)
    measurements = files.read("measurements", run_dir / files.FILE_NAMES["measurements"])
    takes = _takes(run_dir, measurements)
    if not takes:
        hint = ""
        if (measurements.get("bench") or {}).get("deferred_incumbent"):
            hint = f"; the incumbent's takes were deferred: voxbench baseline resume {run_dir}"
        raise SessionError(f"{run_dir} has no utterance saved by both engines: nothing to compare{hint}")
    utterances = (measurements.get("bench") or {}).get("utterances") or []
    seed = secrets.token_hex(32)
    rng = random.Random(seed)  # seeded from a CSPRNG; the seed is sealed, then revealed
    keys = sorted(takes)
    rng.shuffle(keys)
    tmp = scoring.with_name(f".{SCORING_DIR}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "clips").mkdir(parents=True)
    mapping: dict[str, Any] = {}
    pairs = []
    for index, ((utterance, condition), first) in enumerate(zip(keys, _counterbalanced(rng, len(keys)), strict=True)):
        sides = [first, "incumbent" if first == "candidate" else "candidate"]
        ids = [secrets.token_hex(8) for _ in sides]
        for clip_id, side in zip(ids, sides, strict=True):
            normalize_clip(run_dir / takes[(utterance, condition)][side], tmp / "clips" / f"{clip_id}.wav")
            mapping[clip_id] = {"side": side, "utterance": utterance, "condition": condition}
        text = utterances[utterance] if utterance < len(utterances) else ""
        pairs.append({"pair": f"p{index + 1:02d}", "a": ids[0], "b": ids[1], "text": text})
    salt = secrets.token_hex(16)
    sealed = {"seed": seed, "salt": salt, "mapping": mapping}
    public = {
        "session": secrets.token_hex(8),
        "run_id": measurements["run_id"],
        "created_at": _now(),
        "pairs": pairs,
        "mapping_sha256": mapping_digest(salt, mapping),
        "rule_sha256": ((measurements.get("preflight") or {}).get("rule") or {}).get("sha256"),
        "reference": (run_dir / "reference.wav").is_file(),
        "method": "pair order and a counterbalanced A/B order (each engine is A in half the pairs) from "
        "random.Random seeded by 32 bytes of secrets.token_hex; "
        f"clips loudness-normalized to {LOUDNESS_LUFS:g} LUFS (ffmpeg loudnorm), PCM16 mono {CLIP_RATE} Hz, "
        "metadata stripped",
    }
    fd = os.open(tmp / SEALED, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(sealed, handle, sort_keys=True)
    atomic_write_json(tmp / SESSION, public)
    if scoring.exists():
        shutil.rmtree(scoring)
    tmp.rename(scoring)
    return Session(run_dir, public)


def load(run_dir: Path) -> Session:
    path = Path(run_dir) / SCORING_DIR / SESSION
    if not path.is_file():
        raise SessionError(f"{path} is missing: create the session first (voxbench score {run_dir})")
    return Session(Path(run_dir), json.loads(path.read_text()))


def answer(session: Session, listener: str, pair_id: str, clip_id: str, score: int, simulated: bool = False) -> dict:
    """Append one answer (durable on return). A later answer for the same clip supersedes it."""
    pair = session.pair(pair_id)
    if clip_id not in (pair["a"], pair["b"]):
        raise SessionError(f"clip {clip_id!r} is not in pair {pair_id!r}")
    record = {
        "schema": "voxbench/scores/v0",
        "session": session.data["session"],
        "listener": listener,
        "simulated": simulated,
        "pair": pair_id,
        "clip": clip_id,
        "score": score,
        "at": _now(),
    }
    try:
        files.append("scores", session.scores_path, record)
    except files.RunFileError as error:
        raise SessionError(str(error)) from None
    return record


def latest_answers(session: Session) -> dict[tuple[str, str], dict[str, Any]]:
    """(listener, clip) -> the latest answer of this session."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in files.read_records("scores", session.scores_path):
        if record.get("session") == session.data["session"]:
            latest[(record["listener"], record["clip"])] = record
    return latest


def progress(session: Session, listener: str) -> dict[str, Any]:
    answers = {clip: r["score"] for (who, clip), r in latest_answers(session).items() if who == listener}
    done = sum(1 for p in session.data["pairs"] if p["a"] in answers and p["b"] in answers)
    return {"answers": answers, "pairs_done": done, "pairs": len(session.data["pairs"])}


def complete(session: Session) -> bool:
    """Every pair has both clips scored by at least one non-simulated listener."""
    scored = {clip for (_, clip), r in latest_answers(session).items() if not r["simulated"]}
    return all(p["a"] in scored and p["b"] in scored for p in session.data["pairs"])


def reveal(session: Session, *, abandon: bool = False) -> Session:
    """Open the seal: check the mapping's hash and the rule's, then publish the mapping."""
    if session.revealed:
        return session
    if not abandon and not complete(session):
        raise SessionError("not every pair is scored yet; finish, or abandon the session to reveal it")
    sealed_path = session.dir / SEALED
    sealed = json.loads(sealed_path.read_text())
    if mapping_digest(sealed["salt"], sealed["mapping"]) != session.data["mapping_sha256"]:
        raise SessionError("the sealed mapping does not match the hash recorded before the first answer")
    from bench_py.judge.verdict import sealed_rule

    measurements = files.read("measurements", session.run_dir / files.FILE_NAMES["measurements"])
    sealed_rule(measurements)  # raises when the rule changed after PREFLIGHT
    if measurements["preflight"]["rule"]["sha256"] != session.data["rule_sha256"]:
        raise SessionError("the rule's hash differs from the one the session was created under")
    data = {
        **session.data,
        "revealed_at": _now(),
        "revealed_verified": True,
        "abandoned": abandon and not complete(session),
        "revealed_mapping": sealed["mapping"],
        "revealed_seed": sealed["seed"],
        "revealed_salt": sealed["salt"],
    }
    atomic_write_json(session.dir / SESSION, data)
    sealed_path.unlink()
    return Session(session.run_dir, data)


def simulate(session: Session, listeners: int = 1, seed: int = 0) -> int:
    """Scores from simulated listeners (demos and tests): labelled ``simulated``, so the rule
    never counts them. Returns how many answers were written."""
    rng = random.Random(seed)
    written = 0
    for n in range(1, listeners + 1):
        for pair in session.data["pairs"]:
            for clip in (pair["a"], pair["b"]):
                answer(session, f"simulated-{n}", pair["pair"], clip, rng.randint(2, 5), simulated=True)
                written += 1
    return written
