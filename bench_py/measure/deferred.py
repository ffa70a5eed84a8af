"""The deferred incumbent baseline (the seed's F12): when the incumbent is skipped or cannot be
reached during BENCHING, the candidate is still measured, and the incumbent's takes are listed in
``deferred-baseline-utterances.txt`` to be filled in later by ``voxbench baseline resume``.

The later takes go to ``deferred-baseline.jsonl`` (append-only, one record per take, written the
moment each WAV is saved), never into the immutable measurements, and say where and when they
were taken: their timings are not comparable with the candidate's and are not used as such.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import httpx

from bench_py.audio import write_wav_file
from bench_py.measure.bench import Target, one_request

LIST_FILE = "deferred-baseline-utterances.txt"
RECORDS_FILE = "deferred-baseline.jsonl"


class DeferredError(RuntimeError):
    """The deferred baseline cannot be resumed; the message says why."""


def write_list(
    run_dir: Path, utterances: list[str], conditions: list[str], reason: str, owed: list[tuple[int, str]] | None = None
) -> list[str]:
    """The takes the incumbent owes, one per line: ``u<NN><TAB><condition><TAB><sentence>``: every
    utterance in every condition, or those ``owed`` (an incumbent lost mid-run gave the others)."""
    every = [(i, condition) for condition in conditions for i in range(len(utterances))]
    lines = [f"u{i:02d}\t{condition}\t{utterances[i]}" for i, condition in (every if owed is None else owed)]
    header = f"# incumbent takes deferred: {reason}\n# fill them in with: voxbench baseline resume {run_dir.name}\n"
    (run_dir / LIST_FILE).write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return lines


def read_list(run_dir: Path) -> list[tuple[int, str, str]]:
    path = run_dir / LIST_FILE
    if not path.is_file():
        raise DeferredError(f"{path} is missing: this run deferred nothing")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[0].startswith("u") or not parts[0][1:].isdigit():
            raise DeferredError(f"{path} line {number}: expected u<NN><TAB>condition<TAB>sentence")
        out.append((int(parts[0][1:]), parts[1], parts[2]))
    return out


def done(run_dir: Path) -> dict[tuple[int, str], dict[str, Any]]:
    path = run_dir / RECORDS_FILE
    records: dict[tuple[int, str], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # a torn last line is ignored
            if line.strip():
                record = json.loads(line)
                records[(record["utterance"], record["condition"])] = record
    return records


def _append(run_dir: Path, record: dict[str, Any]) -> None:
    fd = os.open(run_dir / RECORDS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def _resume(run_dir: Path, target: Target, limit: int | None, where: str, progress: Any) -> int:
    owed = [t for t in read_list(run_dir) if (t[0], t[1]) not in done(run_dir)]
    if limit is not None:
        owed = owed[:limit]
    taken = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        for index, (utterance, condition, text) in enumerate(owed, start=1):
            record, pcm = await one_request(client, target, "incumbent", condition, utterance, 0, text)  # type: ignore[arg-type]
            if not record.ok:
                raise DeferredError(
                    f"the incumbent did not answer u{utterance:02d} {condition}: {record.error or record.status}; "
                    f"{taken} take(s) saved, run the command again to go on"
                )
            relative = f"wavs/incumbent/{condition}/u{utterance:02d}.wav"
            (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            write_wav_file(str(run_dir / relative), pcm)  # atomic
            _append(
                run_dir,
                {
                    "utterance": utterance,
                    "condition": condition,
                    "side": "incumbent",
                    "wav": relative,
                    "deferred": True,
                    "where": where,
                    "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "total_ms": record.total_ms,
                    "audio_s": record.audio_s,
                    "note": "taken after the run: timings are not comparable with the candidate's",
                },
            )
            taken += 1
            progress(f"incumbent take {index} of {len(owed)}: u{utterance:02d} {condition} ({record.audio_s:.1f} s)")
    return taken


def resume(run_dir: Path, target: Target, *, limit: int | None = None, where: str = "controller",
           progress: Any = lambda _line: None) -> dict[str, Any]:  # fmt: skip
    """Take the incumbent's missing clips; resumable (what is saved is skipped next time)."""
    run_dir = Path(run_dir)
    taken = asyncio.run(_resume(run_dir, target, limit, where, progress))
    owed = read_list(run_dir)
    have = done(run_dir)
    return {"taken": taken, "owed": len(owed), "done": sum((u, c) in have for u, c, _ in owed)}
