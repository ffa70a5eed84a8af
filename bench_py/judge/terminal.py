"""The listening test without a browser: play each clip with a command, read scores from stdin."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench_py.judge import session as sessions

DEFAULT_PLAYERS = ("ffplay -nodisp -autoexit -loglevel quiet", "aplay -q", "paplay")


def default_player() -> str | None:
    import shutil

    for player in DEFAULT_PLAYERS:
        if shutil.which(player.split()[0]):
            return player
    return None


def run(
    session: sessions.Session,
    listener: str,
    ask: Callable[[str], str],
    say: Callable[[str], None],
    player: str | None,
) -> bool:
    """Go through the listener's unanswered clips in pair order; returns True when they have
    scored every pair. Answers are saved one by one, so an interrupted session resumes where it
    stopped. The listener must be registered (``voxbench score`` registers ``--listener``)."""

    def play(path: Path) -> None:
        if player:
            subprocess.run([*shlex.split(player), str(path)], check=False, capture_output=True)

    pairs = session.data["pairs"]
    for number, pair in enumerate(pairs, start=1):
        answers = sessions.progress(session, listener)["answers"]
        if pair["a"] in answers and pair["b"] in answers:
            continue
        say(f"pair {number} of {len(pairs)}: “{pair['text']}”")
        if session.data.get("reference"):
            say("  reference voice")
            play(session.run_dir / "reference.wav")
        for slot in ("a", "b"):
            clip = pair[slot]
            if clip in answers:
                continue
            while True:
                say(f"  {slot.upper()}")
                play(session.clip_path(clip))
                reply = ask(f"  score {slot.upper()} 1-5 (r: replay, q: stop) ").strip().lower()
                if reply == "q":
                    return False
                if reply in {"1", "2", "3", "4", "5"}:
                    try:
                        sessions.answer(session, listener, pair["pair"], clip, int(reply))
                    except sessions.RefusedAnswer as error:
                        say(f"  not saved: {error}")
                        return False
                    break
                if reply != "r":
                    say("  answer 1 to 5, r or q")
    pairs_done: int = sessions.progress(session, listener)["pairs_done"]
    return pairs_done == len(pairs)
