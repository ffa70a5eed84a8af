"""A blind listening session: opaque clips, a sealed mapping, registered listeners, answers that
count only when they are blind, and a reveal that no listener can trigger.

Layout under ``<run>/scoring/``:

- ``clips/<id>.wav`` — every take re-encoded identically (PCM16 mono 24 kHz, EBU R128 loudness,
  metadata stripped, one modification time), named by random ids; the two clips of a pair are
  padded with trailing silence to the same length, so their sizes and header durations are equal;
- ``session.json`` — public: pairs (ids and sentence only), each clip's sha256, the mapping's
  salted sha256, the rule's sha256; after the reveal also the mapping, the seed and the salt, who
  revealed, and the sha256 of the scores file as it stood at the reveal (the answers that count);
- ``listeners.json`` — public: the registered listeners (names only; their keys never touch a file);
- ``sealed.json`` (0600, never served, never published) — the CSPRNG seed, the salt and the mapping,
  until the reveal.

Answers go to the run's ``scores.jsonl``; refused ones are written there too, marked ``refused``.
Every change holds the scores file's lock, so the page's server and a command line can share a
session: an answer is checked against the session as it is on disk at that moment.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import secrets
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench_py import documents
from bench_py.audio import parse_wav_header, wav_header
from bench_py.clock import now_iso
from bench_py.files import atomic_write_json
from bench_py.judge import ffmpeg, pairing

SCORING_DIR = "scoring"
SESSION = "session.json"
SEALED = "sealed.json"
LISTENERS = "listeners.json"
CLIP_RATE = 24000
LOUDNESS_LUFS = -23.0
CLIP_MTIME = 946684800  # 2000-01-01: every clip looks the same age
LISTENER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NOT_BLIND_FIELDS = ("side", "utterance", "condition")


class SessionError(ValueError):
    """The session cannot be created, answered or revealed; the message says why."""


class RefusedAnswer(SessionError):
    """An answer that does not count; it was written to the scores file as refused.
    ``status`` is the HTTP status the page's server answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Session:
    run_dir: Path
    data: dict[str, Any]

    @property
    def dir(self) -> Path:
        return self.run_dir / SCORING_DIR

    @property
    def scores_path(self) -> Path:
        return self.run_dir / documents.FILE_NAMES["scores"]

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
        pairs: list[dict[str, Any]] = self.data["pairs"]
        for pair in pairs:
            if pair["pair"] == pair_id:
                return pair
        raise SessionError(f"no pair {pair_id!r} in this session")


def mapping_digest(salt: str, mapping: dict[str, Any]) -> str:
    payload = json.dumps({"salt": salt, "mapping": mapping}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


#: What every clip is written as: one level, one format, no metadata, no encoder's mark.
_LOUDNORM = f"loudnorm=I={LOUDNESS_LUFS:g}:TP=-2:LRA=11"
_ENCODE = ("-ar", str(CLIP_RATE), "-ac", "1", "-c:a", "pcm_s16le", "-map_metadata", "-1",
           "-fflags", "+bitexact", "-flags:a", "+bitexact")  # fmt: skip


def normalize_clips(jobs: Sequence[tuple[Path, Path]]) -> None:
    """Re-encode each (take, clip) so that no byte but the audio differs between engines: a few
    ffmpeg processes, two at a time, not one per clip. A process that fails is done again clip by
    clip, so that the error names the take."""

    def normalize(batch: list[tuple[Path, Path]]) -> None:
        try:
            done = ffmpeg.per_input([s for s, _ in batch], _LOUDNORM, [[*_ENCODE, str(t)] for _, t in batch])
        except FileNotFoundError:
            raise SessionError("ffmpeg is missing: install it (apt-get install ffmpeg)") from None
        if done.returncode != 0 and len(batch) > 1:
            for job in batch:
                normalize([job])
        elif done.returncode != 0:
            raise SessionError(f"ffmpeg could not normalize {batch[0][0].name}: {done.stderr.strip()[-300:]}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(normalize, ffmpeg.batches(jobs, at_least=2)))


def equalize_pair(paths: Iterable[Path]) -> int:
    """Pad the clips of one pair with trailing silence to the longest one's length and rewrite
    them with one canonical header: equal sizes and durations, so that neither a file listing
    nor a header tells the clips apart. Returns the common length in samples."""
    bodies = {}
    for path in paths:
        data = path.read_bytes()
        _, _, _, offset = parse_wav_header(data)
        bodies[path] = data[offset:][: (len(data) - offset) // 2 * 2]
    length = max(len(body) for body in bodies.values())
    for path, body in bodies.items():
        path.write_bytes(wav_header(CLIP_RATE, length) + body + b"\0" * (length - len(body)))
        os.utime(path, (CLIP_MTIME, CLIP_MTIME))
    return length // 2


def create(run_dir: Path) -> Session:
    """Build and seal the blind session of a collected run (idempotent: an existing one is returned)."""
    run_dir = Path(run_dir)
    scoring = run_dir / SCORING_DIR
    if (scoring / SESSION).is_file():
        return load(run_dir)
    measurements = documents.load_measurements(run_dir / documents.FILE_NAMES["measurements"])
    bench = measurements.bench
    takes = pairing.takes(run_dir, measurements)
    if not takes:
        hint = ""
        if bench and bench.extra("deferred_incumbent"):
            hint = f"; the incumbent's takes were deferred: voxbench baseline resume {run_dir}"
        raise SessionError(f"{run_dir} has no utterance saved by both engines: nothing to compare{hint}")
    utterances = (bench.utterances if bench else None) or []
    seed = secrets.token_hex(32)
    rng = random.Random(seed)  # seeded from a CSPRNG; the seed is sealed, then revealed
    planned, mapping = pairing.plan(takes, rng)
    tmp = scoring.with_name(f".{SCORING_DIR}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "clips").mkdir(parents=True)
        pairs = []
        clips_of = {pair["pair"]: [tmp / "clips" / f"{pair[slot]}.wav" for slot in ("a", "b")] for pair in planned}

        def source(clip: Path) -> Path:
            entry = mapping[clip.stem]
            return run_dir / takes[(entry["utterance"], entry["condition"])][entry["side"]]

        normalize_clips([(source(clip), clip) for clips in clips_of.values() for clip in clips])
        for pair in planned:
            clips = clips_of[pair["pair"]]
            equalize_pair(clips)
            utterance = pair["utterance"]
            text = utterances[utterance] if utterance < len(utterances) else ""
            pairs.append({"pair": pair["pair"], "a": pair["a"], "b": pair["b"], "text": text})
        salt = secrets.token_hex(16)
        sealed = {"seed": seed, "salt": salt, "mapping": mapping}
        public = {
            "session": secrets.token_hex(8),
            "run_id": measurements.run_id,
            "created_at": now_iso(),
            "pairs": pairs,
            "clips_sha256": {
                clip.stem: hashlib.sha256(clip.read_bytes()).hexdigest() for clip in sorted((tmp / "clips").iterdir())
            },
            "mapping_sha256": mapping_digest(salt, mapping),
            "rule_sha256": measurements.preflight.rule.sha256 if measurements.preflight else None,
            "reference": (run_dir / "reference.wav").is_file(),
            "method": "pair order and a counterbalanced A/B order (each engine is A in half the pairs) from "
            "random.Random seeded by 32 bytes of secrets.token_hex; clip ids from secrets.token_hex; "
            f"clips loudness-normalized to {LOUDNESS_LUFS:g} LUFS (ffmpeg loudnorm), PCM16 mono {CLIP_RATE} Hz, "
            "metadata stripped, the two clips of a pair padded with trailing silence to the same length",
        }
        fd = os.open(tmp / SEALED, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(sealed, handle, sort_keys=True)
        atomic_write_json(tmp / SESSION, public)
        atomic_write_json(tmp / LISTENERS, {"listeners": []})
        if scoring.exists():
            shutil.rmtree(scoring)
        tmp.rename(scoring)
        return Session(run_dir, public)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-made session (a full disk) gives its space back
        raise


def load(run_dir: Path) -> Session:
    path = Path(run_dir) / SCORING_DIR / SESSION
    if not path.is_file():
        raise SessionError(f"{path} is missing: create the session first (voxbench score {run_dir})")
    return Session(Path(run_dir), json.loads(path.read_text()))


# -- listeners ---------------------------------------------------------------------------------
def read_listeners(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / SCORING_DIR / LISTENERS
    return json.loads(path.read_text())["listeners"] if path.is_file() else []


def listeners(session: Session) -> list[dict[str, Any]]:
    return read_listeners(session.run_dir)


def register(session: Session, name: str, *, simulated: bool = False) -> dict[str, Any]:
    """Register a listener by name (idempotent). Only the operator registers: the page cannot."""
    if not LISTENER_NAME.match(name or ""):
        raise SessionError(f"listener name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
    with documents.locked(session.scores_path):
        if load(session.run_dir).revealed:
            raise SessionError("the session has been revealed: no listener can join it")
        known = read_listeners(session.run_dir)
        for entry in known:
            if entry["name"] == name:
                if entry["simulated"] != simulated:
                    kind = "simulated" if entry["simulated"] else "real"
                    raise SessionError(f"{name!r} is registered as a {kind} listener; choose another name")
                return entry
        entry = {"name": name, "simulated": simulated, "registered_at": now_iso()}
        atomic_write_json(session.dir / LISTENERS, {"listeners": [*known, entry]})
        return entry


# -- answers -----------------------------------------------------------------------------------
def _given(value: Any, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def refuse(session: Session, reason: str, status: int, given: dict[str, Any]) -> RefusedAnswer:
    """Write a refused answer (what was given, trimmed, with the reason) and return the error to
    raise: refused answers are kept, never counted."""
    record: dict[str, Any] = {"schema": "voxbench/scores/v0", "at": now_iso(), "refused": reason}
    for key in ("session", "listener", "pair", "clip"):
        value = _given(given.get(key))
        if value is not None:
            record[key] = value
    score = given.get("score")
    if isinstance(score, int) and not isinstance(score, bool):
        record["score"] = score
    elif score is not None:
        record["score"] = repr(score)[:32]
    if isinstance(given.get("simulated"), bool):
        record["simulated"] = given["simulated"]
    documents.append("scores", session.scores_path, record)
    return RefusedAnswer(reason, status)


def _why_refused(current: Session, given: dict[str, Any]) -> tuple[str, int] | None:
    data = current.data
    if current.revealed:
        return "the session has been revealed: answers are closed", 409
    if given["session"] != data["session"]:
        return f"this answer is for session {given['session']!r}, not the sealed session: reload the page", 409
    entry = next((e for e in read_listeners(current.run_dir) if e["name"] == given["listener"]), None)
    if entry is None:
        return f"{given['listener']!r} is not a registered listener: the operator registers listeners", 403
    if entry["simulated"] != given["simulated"]:
        return f"{given['listener']!r} is registered as {'' if entry['simulated'] else 'not '}simulated", 403
    pair = next((p for p in data["pairs"] if p["pair"] == given["pair"]), None)
    if pair is None:
        return f"no pair {given['pair']!r} in this session", 400
    if given["clip"] not in (pair["a"], pair["b"]):
        return f"clip {given['clip']!r} is not in pair {given['pair']!r}", 400
    score = given["score"]
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        return "score must be an integer from 1 to 5", 400
    return None


def answer(
    session: Session,
    listener: str,
    pair_id: object,  # as the page sent them: checked here, and refused unless they name the session's pair and clip
    clip_id: object,
    score: Any,
    *,
    simulated: bool = False,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Append one blind answer (durable on return); a later answer for the same clip supersedes it.

    Counts only from a registered listener, for the sealed session, before the reveal, naming a
    pair and one of its clips by their opaque ids. Anything else is written as refused and raised
    as :class:`RefusedAnswer`."""
    given = {
        "session": session.data["session"] if session_id is None else session_id,
        "listener": listener,
        "pair": pair_id,
        "clip": clip_id,
        "score": score,
        "simulated": simulated,
    }
    with documents.locked(session.scores_path):
        current = load(session.run_dir)  # the reveal may have happened in another process
        refusal = _why_refused(current, given)
        if refusal is not None:
            raise refuse(current, refusal[0], refusal[1], given)
        record = {"schema": "voxbench/scores/v0", **given, "at": now_iso()}
        try:
            documents.append("scores", session.scores_path, record)
        except documents.RunFileError as error:
            raise refuse(current, str(error), 400, given) from None
    return record


@dataclass
class Classified:
    """A session's answers sorted out: ``counted`` (the latest per listener and clip; joined with
    side, utterance and condition once revealed) and ``refused`` (each with its reason)."""

    counted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    def refused_reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.refused:
            key = re.sub(r"'[^']*'", "…", record["refused"])  # one line per kind of reason
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))


def classify(
    session: dict[str, Any] | None,
    registered: list[dict[str, Any]],
    records: Iterable[tuple[int, int, dict[str, Any]]],
) -> Classified:
    """Which answers count, from the files alone. An answer counts when it was not refused when
    given, belongs to the sealed session, names its pair and a clip of it by opaque id only, comes
    from a registered listener (simulated as registered), and lies in the part of the scores file
    the reveal sealed. Everything else is refused here, with the reason."""
    out = Classified()
    pairs = {p["pair"]: p for p in (session or {}).get("pairs", [])}
    names = {e["name"]: e for e in registered}
    sealed_bytes = ((session or {}).get("scores_at_reveal") or {}).get("bytes")
    mapping = (session or {}).get("revealed_mapping") or {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}

    def set_aside(record: dict[str, Any], reason: str) -> None:
        out.refused.append({**record, "refused": reason})

    for _start, end, record in records:
        pair = pairs.get(record.get("pair", ""))
        if "refused" in record:
            out.refused.append(record)
        elif session is None:
            set_aside(record, "there is no sealed session: not a blind answer")
        elif record.get("session") != session["session"]:
            set_aside(record, f"not an answer to the sealed session {session['session']}")
        elif any(key in record for key in NOT_BLIND_FIELDS):
            set_aside(record, "names a side, utterance or condition: not a blind answer")
        elif record["listener"] not in names:
            set_aside(record, f"{record['listener']!r} is not a registered listener")
        elif names[record["listener"]]["simulated"] != record["simulated"]:
            set_aside(record, "its simulated flag differs from its listener's registration")
        elif pair is None or record["clip"] not in (pair["a"], pair["b"]):
            set_aside(record, "does not name a pair of this session and one of its clips")
        elif sealed_bytes is not None and end > sealed_bytes:
            set_aside(record, "given after the reveal")
        else:
            latest[(record["listener"], record["clip"])] = record
    for record in latest.values():
        entry = mapping.get(record["clip"])
        if entry is not None:
            record = {**record, "side": entry["side"], "utterance": entry["utterance"], "condition": entry["condition"]}
        out.counted.append(record)
    return out


def scores_seal_error(session: dict[str, Any] | None, scores_path: Path) -> str | None:
    """After the reveal: None when the scores file still begins with exactly what the reveal
    sealed; otherwise what changed."""
    seal = (session or {}).get("scores_at_reveal")
    if not seal:
        return None
    prefix = documents.complete_bytes(scores_path)[: seal["bytes"]]
    if len(prefix) < seal["bytes"] or hashlib.sha256(prefix).hexdigest() != seal["sha256"]:
        return (
            f"{scores_path.name} no longer begins with the {seal['bytes']} bytes the reveal sealed "
            f"(sha256 {seal['sha256'][:12]}…): answers were changed after the reveal"
        )
    return None


def classified(session: Session) -> Classified:
    return classify(session.data, listeners(session), documents.iter_records_at("scores", session.scores_path))


def progress(session: Session, listener: str) -> dict[str, Any]:
    """One listener's own answers (clip -> score) and how many pairs they finished: nobody else's."""
    answers = {r["clip"]: r["score"] for r in classified(session).counted if r["listener"] == listener}
    done = sum(1 for p in session.data["pairs"] if p["a"] in answers and p["b"] in answers)
    return {"answers": answers, "pairs_done": done, "pairs": len(session.data["pairs"])}


def finished_listeners(session: Session) -> dict[str, bool]:
    """Each registered real listener: whether they scored every clip of every pair."""
    counted = classified(session).counted
    clips = session.clip_ids()
    out = {}
    for entry in listeners(session):
        if not entry["simulated"]:
            given = {r["clip"] for r in counted if r["listener"] == entry["name"]}
            out[entry["name"]] = clips <= given
    return out


def everyone_finished(session: Session) -> bool:
    finished = finished_listeners(session)
    return bool(finished) and all(finished.values())


def reveal(session: Session, *, by: Literal["operator", "listeners"]) -> Session:
    """Open the seal: check the mapping's hash and the rule's, seal the answers given so far by
    the scores file's sha256, then publish the mapping. ``listeners``: only once every registered
    listener has finished. ``operator``: at any time (recorded as abandoned when someone had not)."""
    with documents.locked(session.scores_path):
        session = load(session.run_dir)
        if session.revealed:
            return session
        finished = finished_listeners(session)
        everyone = bool(finished) and all(finished.values())
        if by == "listeners" and not everyone:
            waiting = sorted(name for name, done in finished.items() if not done) or ["(no listener registered)"]
            raise SessionError(
                f"not every registered listener has finished (waiting for {', '.join(waiting)}); "
                f"the operator can close the session: voxbench score {session.run_dir} --close"
            )
        sealed_path = session.dir / SEALED
        if not sealed_path.is_file():
            raise SessionError(f"{sealed_path} is missing: the mapping cannot be revealed from this copy of the run")
        sealed = json.loads(sealed_path.read_text())
        if mapping_digest(sealed["salt"], sealed["mapping"]) != session.data["mapping_sha256"]:
            raise SessionError("the sealed mapping does not match the hash recorded before the first answer")
        from bench_py.judge.verdict import sealed_rule

        measurements = documents.load_measurements(session.run_dir / documents.FILE_NAMES["measurements"])
        sealed_rule(measurements)  # raises when the rule changed after PREFLIGHT (or none was sealed)
        sealed_sha256 = measurements.preflight.rule.sha256 if measurements.preflight else None
        if sealed_sha256 != session.data["rule_sha256"]:
            raise SessionError("the rule's hash differs from the one the session was created under")
        answers = documents.complete_bytes(session.scores_path)
        data = {
            **session.data,
            "revealed_at": now_iso(),
            "revealed_by": "operator" if by == "operator" else "every listener finished",
            "revealed_verified": True,
            "abandoned": not everyone,
            "listeners_finished": finished,
            "scores_at_reveal": {"bytes": len(answers), "sha256": hashlib.sha256(answers).hexdigest()},
            "revealed_mapping": sealed["mapping"],
            "revealed_seed": sealed["seed"],
            "revealed_salt": sealed["salt"],
        }
        atomic_write_json(session.dir / SESSION, data)
        sealed_path.unlink()
    return Session(session.run_dir, data)


def simulate(session: Session, listeners: int = 1, seed: int = 0) -> int:
    """Scores from simulated listeners (demos and tests): registered and labelled ``simulated``,
    so the rule never counts them and they never hold up a reveal. Returns the answers written."""
    rng = random.Random(seed)
    written = 0
    for n in range(1, listeners + 1):
        name = f"simulated-{n}"
        register(session, name, simulated=True)
        for pair in session.data["pairs"]:
            for clip in (pair["a"], pair["b"]):
                answer(session, name, pair["pair"], clip, rng.randint(2, 5), simulated=True)
                written += 1
    return written
