"""Blind A/B listening: the page in headless Chromium, the server, the terminal mode, score.yml."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench_py import documents
from bench_py.judge import session as sessions
from tests.helpers import ROOT, chromium, console_errors
from tests.integration.conftest import score_by_mapping

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent
ENGINE_WORDS = ("candidate", "incumbent", "voxtral", "chatterbox", "espeak", "flite", "festival", "mistral")


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / finished_run["run_dir"].name
    shutil.copytree(finished_run["run_dir"], copy)
    return copy


def start_server(run_dir: Path, *listeners: str, env: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """``voxbench score RUN --listener …`` as a real process; returns it and its server.json
    (the page's URL and each listener's personal link)."""
    info = run_dir / "scoring" / "server.json"
    info.unlink(missing_ok=True)
    process = subprocess.Popen(
        [str(BIN / "voxbench"), "score", str(run_dir), *(f"--listener={name}" for name in listeners)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 60
    while not info.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the listening server did not write its address"
        time.sleep(0.1)
    assert oct(info.stat().st_mode & 0o777) == "0o600"  # the URL carries the token, the secret the keys
    return process, json.loads(info.read_text())


def key_of(link: str) -> dict[str, str]:
    return {"X-Listener-Key": link.split("#key=", 1)[1]}


def counted_and_refused(run_dir: Path) -> tuple[list[dict], list[dict]]:
    session = sessions.load(run_dir)
    result = sessions.classified(session)
    return result.counted, result.refused


def blind_words(text: str | bytes) -> list[str]:
    data = text.lower() if isinstance(text, str) else text.lower().decode("latin-1")
    return [w for w in ENGINE_WORDS if w in data]


def test_the_page_is_blind_resumable_and_reveals(run_copy):
    process, info = start_server(run_copy, "alice")
    session = sessions.load(run_copy)
    pairs = session.data["pairs"]
    try:
        with chromium() as driver:
            driver.get(info["links"]["alice"])
            _wait(driver, "#pair-label")
            assert driver.execute_script("return location.hash") == ""  # the key left the address bar
            assert driver.find_element("css selector", "#pair-label").text == f"Pair 1 of {len(pairs)}"
            assert driver.find_element("css selector", "#listener-label").text == "listener alice"
            driver.find_element("css selector", "#clip-a .play").click()  # plays A (muted)
            body = driver.find_element("css selector", "body")
            body.send_keys("4")  # scores the selected clip, A
            _wait_text(driver, "#saved", "Saved: A = 4")
            driver.find_element("css selector", '#clip-b button[data-score="2"]').click()
            _wait_text(driver, "#pair-label", f"Pair 2 of {len(pairs)}")
            driver.refresh()  # closing the page loses nothing: it resumes at the first open pair
            _wait_text(driver, "#pair-label", f"Pair 2 of {len(pairs)}")
            assert "1 of" in driver.find_element("css selector", "#progress-text").text
            for number in range(2, len(pairs) + 1):
                _wait_text(driver, "#pair-label", f"Pair {number} of {len(pairs)}")
                driver.find_element("css selector", "body").send_keys("5")
                _wait_text(driver, "#saved", "Saved: A = 5")
                if number < len(pairs):
                    driver.find_element("css selector", "body").send_keys("3")
                    _wait_text(driver, "#saved", "Saved: B = 3")
            # One clip to go. Before the reveal neither the DOM nor any response names an engine,
            # and there is nothing a listener could press to reveal.
            assert not blind_words(driver.page_source)
            assert driver.find_elements("css selector", "#reveal, #abandon") == []
            bodies = _response_bodies(driver)
            assert len(bodies) >= 3 and any(url_.endswith(".wav") for url_, _ in bodies)
            for url_, data in bodies:
                assert not blind_words(data), url_
            assert console_errors(driver) == []
            driver.find_element("css selector", "body").send_keys("3")  # the last answer of the only listener
            _wait(driver, "#revealed:not([hidden])")
            revealed = driver.find_element("css selector", "#reveal-table").text
            assert "candidate" in revealed and "incumbent" in revealed
            assert "pending_listening" in driver.find_element("css selector", "#verdict").text
        process.wait(timeout=30)  # the server stops a moment after the reveal
    finally:
        if process.poll() is None:
            process.kill()
    answers = documents.read_records("scores", run_copy / "scores.jsonl")
    assert len(answers) == 2 * len(pairs) and all(a["listener"] == "alice" and not a["simulated"] for a in answers)
    assert all("side" not in a for a in answers)  # the answers themselves stay blind
    revealed = sessions.load(run_copy).data
    assert revealed["revealed_verified"] and not (run_copy / "scoring" / "sealed.json").exists()
    assert revealed["revealed_by"] == "every listener finished" and not revealed["abandoned"]
    assert (
        sessions.mapping_digest(revealed["revealed_salt"], revealed["revealed_mapping"]) == revealed["mapping_sha256"]
    )
    verdict = documents.read("verdict", run_copy / "verdict.json")
    assert verdict["verdict"] == "pending_listening"  # 2 cloned pairs < the rule's 10: the rule says so, not the page
    assert verdict["statistics"]["n"] == {"candidate": 2, "incumbent": 2}
    firsts = [revealed["revealed_mapping"][p["a"]]["side"] for p in pairs]
    assert min(firsts.count("candidate"), firsts.count("incumbent")) == len(pairs) // 2  # counterbalanced A/B


def _score_pairs(driver, count: int, total: int, a: str, b: str) -> None:
    """Score the first ``count`` of ``total`` pairs with the keyboard: A gets ``a``, B gets ``b``."""
    _wait(driver, "#pair-label")
    for number in range(1, count + 1):
        _wait_text(driver, "#pair-label", f"Pair {number} of {total}")
        driver.find_element("css selector", "body").send_keys(a)
        _wait_text(driver, "#saved", f"Saved: A = {a}")
        driver.find_element("css selector", "body").send_keys(b)
        _wait_text(driver, "#saved", f"Saved: B = {b}")


def test_two_listeners_score_privately_in_chromium_and_neither_can_end_the_session(run_copy):
    process, info = start_server(run_copy, "alice", "bob")
    pairs = sessions.load(run_copy).data["pairs"]
    links, url = info["links"], info["url"]
    try:
        with chromium() as alice, chromium() as bob, httpx.Client() as client:
            alice.get(links["alice"])
            bob.get(links["bob"])
            _score_pairs(alice, len(pairs), len(pairs), "5", "1")
            _wait(alice, "#finished:not([hidden])")  # finished, and told it is not hers to reveal
            assert alice.find_elements("css selector", "#reveal, #abandon") == []
            # Neither listener can reveal, by the page's API or by finishing first.
            for name in ("alice", "bob"):
                refused = client.post(url + "api/reveal", headers=key_of(links[name]), json={"abandon": True})
                assert refused.status_code == 403 and "cannot reveal" in refused.json()["error"]
            time.sleep(1.5)  # longer than the server's watch interval
            assert not sessions.load(run_copy).revealed
            assert alice.find_element("css selector", "#revealed").get_attribute("hidden") is not None
            # Each listener sees their own answers only, whatever the query says.
            _wait_text(bob, "#progress-text", f"0 of {len(pairs)} pairs scored")
            as_bob = client.get(url + "api/state", params={"listener": "alice"}, headers=key_of(links["bob"])).json()
            assert as_bob["listener"] == "bob" and as_bob["progress"]["answers"] == {}
            as_alice = client.get(url + "api/state", headers=key_of(links["alice"])).json()
            assert len(as_alice["progress"]["answers"]) == 2 * len(pairs)
            assert client.get(url + "api/state", params={"listener": "alice"}).status_code == 403  # no key
            assert client.get(url + "api/state", headers={"X-Listener-Key": "0" * 32}).status_code == 403
            forged = {"session": as_bob["session"], "pair": pairs[0]["pair"], "clip": pairs[0]["a"], "score": 1}
            assert client.post(url + "api/answer", json=forged).status_code == 403  # a name is not a key
            # Bob's last answer completes every registered listener: the session reveals itself.
            _score_pairs(bob, len(pairs) - 1, len(pairs), "3", "3")
            _wait_text(bob, "#pair-label", f"Pair {len(pairs)} of {len(pairs)}")
            bob.find_element("css selector", "body").send_keys("3")
            _wait_text(bob, "#saved", "Saved: A = 3")
            assert not sessions.load(run_copy).revealed
            bob.find_element("css selector", "body").send_keys("3")
            _wait(bob, "#revealed:not([hidden])")
            _wait(alice, "#revealed:not([hidden])", timeout=20)  # her page notices by itself
            for driver, scores in ((alice, {"5", "1"}), (bob, {"3"})):
                rows = driver.find_elements("css selector", "#reveal-table tbody tr")
                assert len(rows) == len(pairs)
                shown = {cell.text for row in rows for cell in row.find_elements("css selector", "td")[2::2]}
                assert shown == scores  # each sees their own scores beside the revealed sides
            assert "agreement between listeners" in alice.find_element("css selector", "#agreement").text
            assert console_errors(alice) == [] and console_errors(bob) == []
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    session = sessions.load(run_copy).data
    assert session["revealed_by"] == "every listener finished"
    assert session["listeners_finished"] == {"alice": True, "bob": True}
    statistics = documents.read("verdict", run_copy / "verdict.json")["statistics"]
    assert statistics["listeners"] == ["alice", "bob"] and statistics["alpha_ordinal"] is not None
    counted, refused = counted_and_refused(run_copy)
    assert len(counted) == 4 * len(pairs) and len(refused) == 1  # the forged answer, kept and never counted


def _wait(driver, css: str, timeout: float = 15.0):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located(("css selector", css)))


def _wait_text(driver, css: str, text: str, timeout: float = 15.0) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(expected_conditions.text_to_be_present_in_element(("css selector", css), text))


def _response_bodies(driver) -> list[tuple[str, bytes]]:
    """Every network response the page received, with its body, from Chromium's own log."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.responseReceived":
            continue
        url = message["params"]["response"]["url"]
        if url.startswith("data:"):  # the page's inline favicon: nothing came from the server
            continue
        try:
            body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": message["params"]["requestId"]})
        except Exception:
            out.append((url, httpx.get(url).content))
            continue
        data = base64.b64decode(body["body"]) if body.get("base64Encoded") else body["body"].encode()
        out.append((url, data))
    return out


def test_a_killed_server_loses_no_saved_answer_and_old_tokens_stop_working(run_copy):
    process, info = start_server(run_copy, "bob")
    url, key = info["url"], key_of(info["links"]["bob"])
    pairs = sessions.load(run_copy).data["pairs"]
    with httpx.Client() as client:
        for pair in pairs[:2]:
            answer = {"pair": pair["pair"], "clip": pair["a"], "score": 3}
            assert client.post(url + "api/answer", json=answer, headers=key).status_code == 200
        bad = client.post(url + "api/answer", json={**answer, "score": 9}, headers=key)
        assert bad.status_code == 400 and "integer from 1 to 5" in bad.json()["error"]
        assert client.post(url + "api/answer", json=answer, headers={"X-Listener-Key": "x"}).status_code == 403
        wrong = url.rsplit("/s/", 1)[0] + "/s/not-the-token/api/state"
        assert client.get(wrong, headers=key).status_code == 404
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        again, fresh = start_server(run_copy)  # bob stays registered
        try:
            old_token = url.rsplit("/s/", 1)[1]
            assert fresh["url"] != url and set(fresh["links"]) == {"bob"}  # a new server, a new token
            assert client.get(fresh["url"].rsplit("/s/", 1)[0] + f"/s/{old_token}api/state").status_code == 404
            assert client.get(fresh["url"] + "api/state", headers=key).status_code == 403  # and new keys
            new_key = key_of(fresh["links"]["bob"])
            state = client.get(fresh["url"] + "api/state", headers=new_key).json()
            assert set(state["progress"]["answers"]) == {p["a"] for p in pairs[:2]}
            assert client.post(fresh["url"] + "api/reveal", headers=new_key).status_code == 403
            clips = [client.get(f"{fresh['url']}clip/{p[s]}.wav").content for p in pairs for s in ("a", "b")]
        finally:
            again.kill()
            again.wait(timeout=10)
    for clip in clips:  # identical format, no metadata chunk
        assert clip[:4] == b"RIFF" and clip[8:16] == b"WAVEfmt " and b"LIST" not in clip[:200]
        assert clip[22:24] == b"\x01\x00" and int.from_bytes(clip[24:28], "little") == sessions.CLIP_RATE
    for pair_clips in zip(clips[::2], clips[1::2], strict=True):  # the two clips of a pair: the same length
        assert len(pair_clips[0]) == len(pair_clips[1]) and pair_clips[0][:44] == pair_clips[1][:44]
    counted, refused = counted_and_refused(run_copy)
    assert len(counted) == 2 and len(refused) == 2


def test_the_operator_adds_a_listener_and_closes_the_session_while_the_page_is_served(run_copy):
    process, info = start_server(run_copy, "gus")
    pairs = sessions.load(run_copy).data["pairs"]
    try:
        added = subprocess.run(
            [str(BIN / "voxbench"), "score", str(run_copy), "--listener", "hal"], capture_output=True, text=True
        )
        assert added.returncode == 0 and f"already served (pid {process.pid})" in added.stdout
        (link,) = [line.split(": ", 1)[1] for line in added.stdout.splitlines() if line.startswith("listener hal")]
        with httpx.Client() as client:
            assert client.get(info["url"] + "api/state", headers=key_of(link)).json()["listener"] == "hal"
            for pair in pairs:  # gus finishes; hal, registered later, has not: no reveal
                for clip in (pair["a"], pair["b"]):
                    body = {"pair": pair["pair"], "clip": clip, "score": 4}
                    given = client.post(info["url"] + "api/answer", json=body, headers=key_of(info["links"]["gus"]))
                    assert given.status_code == 200
            assert not sessions.load(run_copy).revealed
            closed = subprocess.run([str(BIN / "voxbench"), "score", str(run_copy), "--close"], capture_output=True)
            assert closed.returncode == 0
            assert process.wait(timeout=30) == 0  # the page noticed the operator's close, showed it, stopped
    finally:
        if process.poll() is None:
            process.kill()
    session = sessions.load(run_copy).data
    assert session["revealed_by"] == "operator" and session["abandoned"] is True
    assert session["listeners_finished"] == {"gus": True, "hal": False}


def test_a_server_killed_mid_write_loses_only_the_answer_being_written(run_copy):
    """A real SIGKILL while the server is between the two halves of an answer's line (the
    test-only pause makes the moment certain): the answers before it and after it are all there."""
    scores = run_copy / "scores.jsonl"
    process, info = start_server(run_copy, "erin")
    pairs = sessions.load(run_copy).data["pairs"]
    answers = [{"pair": p["pair"], "clip": p[s], "score": 2 + i % 3} for i, (p, s) in enumerate(
        (p, s) for p in pairs for s in ("a", "b"))]  # fmt: skip
    with httpx.Client(timeout=60) as client:
        for body in answers[:2]:
            given = client.post(info["url"] + "api/answer", json=body, headers=key_of(info["links"]["erin"]))
            assert given.status_code == 200
        process.terminate()
        process.wait(timeout=10)
        paused, info = start_server(run_copy, env={documents.TEST_PAUSE_ENV: "60"})
        outcome: dict = {}

        def post() -> None:
            try:
                outcome["response"] = client.post(
                    info["url"] + "api/answer", json=answers[2], headers=key_of(info["links"]["erin"])
                )
            except httpx.HTTPError as error:
                outcome["error"] = error

        writer = threading.Thread(target=post)
        writer.start()
        deadline = time.monotonic() + 30
        while scores.read_bytes().endswith(b"\n"):
            assert time.monotonic() < deadline, "the server never wrote the first half of the answer"
            time.sleep(0.01)
        paused.send_signal(signal.SIGKILL)
        paused.wait(timeout=10)
        writer.join(timeout=30)
        assert "error" in outcome  # the listener was never told it was saved
        torn = scores.read_bytes().rsplit(b"\n", 1)[1]
        again, info = start_server(run_copy)
        try:
            key = key_of(info["links"]["erin"])
            for body in answers[2:4]:  # the page says "Not saved": the listener gives it again, then goes on
                assert client.post(info["url"] + "api/answer", json=body, headers=key).status_code == 200
            state = client.get(info["url"] + "api/state", headers=key).json()
        finally:
            again.kill()
            again.wait(timeout=10)
    assert state["progress"]["answers"] == {a["clip"]: a["score"] for a in answers[:4]}
    counted, refused = counted_and_refused(run_copy)
    assert sorted((r["clip"], r["score"]) for r in counted) == sorted((a["clip"], a["score"]) for a in answers[:4])
    assert refused == []
    (note,) = [json.loads(line) for line in documents.torn_path(scores).read_text().splitlines()]
    assert note["text"].encode() == torn and answers[2]["clip"].encode() in torn  # the answer being written


def test_non_blind_and_late_answers_are_refused_and_do_not_move_the_verdict(run_copy):
    mapping = score_by_mapping(run_copy, ["fay"], lambda _who, entry: 3)
    session = sessions.load(run_copy)
    crafted = [  # what report.py used to count: lines naming their side (ten per side would decide)
        {"schema": "voxbench/scores/v0", "session": session.data["session"], "listener": "fay", "simulated": False,
         "pair": "p01", "clip": f"c{n}", "utterance": 0, "condition": "cloned", "side": side, "score": score,
         "at": "2026-11-26T10:00:00+00:00"}
        for n in range(10) for side, score in (("candidate", 5), ("incumbent", 1))
    ]  # fmt: skip
    for record in crafted:
        documents.append("scores", run_copy / "scores.jsonl", record)
    pair = session.data["pairs"][0]
    with pytest.raises(sessions.RefusedAnswer, match="not a registered listener"):
        sessions.answer(session, "mallory", pair["pair"], pair["a"], 5)
    with pytest.raises(sessions.RefusedAnswer, match="not the sealed session"):
        sessions.answer(session, "fay", pair["pair"], pair["a"], 5, session_id="an-earlier-session")
    closed = subprocess.run([str(BIN / "voxbench"), "score", str(run_copy), "--close"], capture_output=True, text=True)
    assert closed.returncode == 0 and "revealed; verdict pending_listening" in closed.stdout, closed.stderr
    verdict = documents.read("verdict", run_copy / "verdict.json")
    assert verdict["statistics"]["n"] == {"candidate": 2, "incumbent": 2}  # fay's, and only fay's
    assert verdict["statistics"]["means"] == {"candidate": 3.0, "incumbent": 3.0}
    assert verdict["statistics"]["refused"]["count"] == 22
    assert sessions.load(run_copy).data["abandoned"] is False  # fay had finished: closed, not cut short
    # After the reveal: refused as given, and refused again when written behind the session's back.
    with pytest.raises(sessions.RefusedAnswer, match="revealed") as late:
        sessions.answer(session, "fay", pair["pair"], pair["a"], 5)
    assert late.value.status == 409
    for clip, entry in mapping.items():
        documents.append("scores", run_copy / "scores.jsonl", {
            "schema": "voxbench/scores/v0", "session": session.data["session"], "listener": "fay", "simulated": False,
            "pair": next(p["pair"] for p in session.data["pairs"] if clip in (p["a"], p["b"])), "clip": clip,
            "score": 5 if entry["side"] == "candidate" else 1, "at": "2026-11-26T09:00:00+00:00"})  # fmt: skip
    again = subprocess.run([str(BIN / "voxbench"), "report", str(run_copy), "--json"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    recomputed = json.loads(again.stdout)
    assert (
        recomputed["verdict"] == "pending_listening"
        and recomputed["statistics"]["means"] == verdict["statistics"]["means"]
    )
    assert recomputed["statistics"]["refused"]["reasons"]["given after the reveal"] == len(mapping)
    assert recomputed["statistics"]["refused"]["count"] == 22 + 1 + len(mapping)
    served = subprocess.run([str(BIN / "voxbench"), "score", str(run_copy)], capture_output=True, text=True)
    assert "already revealed; verdict pending_listening" in served.stdout  # no page for a closed session
    # An answer changed inside what the reveal sealed is an error, not a new verdict.
    text = (run_copy / "scores.jsonl").read_text()
    (run_copy / "scores.jsonl").write_text(text.replace('"score":3', '"score":5', 1))
    tampered = subprocess.run([str(BIN / "voxbench"), "report", str(run_copy)], capture_output=True, text=True)
    assert tampered.returncode == 1 and "answers were changed after the reveal" in tampered.stderr


def test_terminal_mode_resumes_and_reveals(run_copy):
    pairs = sessions.load(sessions.create(run_copy).run_dir).data["pairs"]
    command = [str(BIN / "voxbench"), "score", str(run_copy), "--terminal", "--listener", "carol", "--player", "true"]
    first = subprocess.run(command, input="4\nr\n3\nq\n", capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "stopped; every answer so far is saved" in first.stdout
    assert len(documents.read_records("scores", run_copy / "scores.jsonl")) == 2
    rest = "\n".join(["5", "2"] * (len(pairs) - 1)) + "\n"
    second = subprocess.run(command, input=rest, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "revealed; verdict pending_listening" in second.stdout  # carol is the only listener
    assert f"pair 1 of {len(pairs)}" not in second.stdout  # resumed at pair 2


def test_simulated_listeners_never_decide(run_copy):
    result = subprocess.run(
        [str(BIN / "voxbench"), "score", str(run_copy), "--simulate", "3", "--close"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    verdict = documents.read("verdict", run_copy / "verdict.json")
    assert verdict["verdict"] == "pending_listening"
    assert verdict["statistics"]["simulated_ignored"] > 0 and verdict["statistics"]["n"]["candidate"] == 0
    assert all(r["simulated"] for r in documents.read_records("scores", run_copy / "scores.jsonl"))
    assert sessions.load(run_copy).data["revealed_by"] == "operator"


def test_score_yml_prints_the_links_waits_and_commits_sealed_then_revealed(run_copy):
    # Its own repository (created on first use): the shared run's branch stays as other tests expect it.
    checkout = run_copy.parent / "artifacts" / "checkout"
    variables = {"run_dir": str(run_copy), "voxbench_artifacts_repo": str(checkout), "voxbench_score_poll_s": 1,
                 "voxbench_score_listeners": ["dana"]}  # fmt: skip
    process = subprocess.Popen(
        [str(BIN / "ansible-playbook"), "score.yml", "-e", json.dumps(variables)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
    )
    info = run_copy / "scoring" / "server.json"
    deadline = time.monotonic() + 120
    while not info.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(0.2)
    server = json.loads(info.read_text())
    pairs = sessions.load(run_copy).data["pairs"]
    with httpx.Client() as client:
        for pair in pairs:
            for clip, score in ((pair["a"], 4), (pair["b"], 2)):
                response = client.post(
                    server["url"] + "api/answer",
                    json={"pair": pair["pair"], "clip": clip, "score": score},
                    headers=key_of(server["links"]["dana"]),
                )
                assert response.status_code == 200
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    assert server["links"]["dana"] in output  # printed, key included, for the operator to hand over
    assert "revealed; verdict pending_listening" in output
    origin = checkout.parent / "origin.git"
    shown = next(line for line in output.splitlines() if "branch voxtral-bench-" in line)
    name = shown.split("branch ", 1)[1].split()[0]
    log = subprocess.run(
        ["git", "log", "--format=%s", "--name-only", name], cwd=origin, capture_output=True, text=True, check=True
    ).stdout
    complete, sealed = log.split("voxtral bench ")[1:3]
    assert "(complete)" in complete and f"docs/{run_copy.name}/scores.jsonl" in complete
    assert "(sealed for blind listening)" in sealed and "scores.jsonl" not in sealed  # the seal came first
    assert f"docs/{run_copy.name}/scoring/session.json" in sealed


def test_the_python_api_scores_through_the_module_and_returns_the_verdict_as_a_fact(run_copy):
    from bench_py import api

    checkout = run_copy.parent / "artifacts" / "checkout"
    answered: list[int] = []

    def answer_everything(links: dict[str, str]) -> None:
        # Called from the runner's event stream once the page is up; the page is the module's process.
        server = json.loads((run_copy / "scoring" / "server.json").read_text())
        with httpx.Client() as client:
            for pair in sessions.load(run_copy).data["pairs"]:
                for clip, score in ((pair["a"], 5), (pair["b"], 1)):
                    response = client.post(
                        server["url"] + "api/answer",
                        json={"pair": pair["pair"], "clip": clip, "score": score},
                        headers=key_of(links["erin"]),
                    )
                    answered.append(response.status_code)

    result = api.score(
        run_copy,
        listeners=["erin"],
        on_links=answer_everything,
        extra_vars={"voxbench_artifacts_repo": str(checkout), "voxbench_score_poll_s": 1},
    )
    assert answered and set(answered) == {200}
    verdict = result.facts["localhost"]["voxbench_verdict"]
    assert verdict == json.loads((run_copy / "verdict.json").read_text())  # the document, derived after the reveal
    assert verdict["verdict"] == "pending_listening"
    # The fact travels in the async_status task's runner_on_ok event, as the design card says.
    carriers = [
        e["event_data"]["task_action"]
        for e in result.events
        if e.get("event") == "runner_on_ok"
        and "voxbench_verdict" in ((e["event_data"].get("res") or {}).get("ansible_facts") or {})
    ]
    assert carriers == ["ansible.builtin.async_status"]
    assert sessions.load(run_copy).revealed


def test_the_asr_proxy_hears_a_real_sentence_and_not_silence(tmp_path):
    import numpy as np

    from bench_py.audio import Pcm, read_wav_file
    from bench_py.judge.proxies import PocketSphinxAsr, word_error_rate

    sentence = "The train leaves at seven forty-five, so we should head out soon."
    subprocess.run(["flite", "-t", sentence, "-o", str(tmp_path / "s.wav")], check=True)
    asr = PocketSphinxAsr()
    assert word_error_rate(sentence, asr.transcribe(read_wav_file(str(tmp_path / "s.wav")))) < 0.5
    assert word_error_rate(sentence, asr.transcribe(Pcm(np.zeros(16000, dtype=np.int16), 16000))) > 0.8
    assert word_error_rate("Seven forty-five.", "seven forty five") == 0.0


def test_a_skipped_baseline_is_deferred_then_resumed_resumably(bench_env):
    variables = {**bench_env["extra"], "voxbench_config": {"profile": "fast", **bench_env["config"]}}
    (bench_env["tmp"] / "vars.json").write_text(json.dumps(variables))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "bench.yml", "-e", f"@{bench_env['tmp'] / 'vars.json'}",
         "-e", "gemma_mode=parallel", "-e", "skip_baseline=true"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    (run_dir,) = (bench_env["tmp"] / "runs").iterdir()
    m = documents.read("measurements", run_dir / "measurements.json")
    assert "incumbent" not in m["bench"]["records"] and m["bench"]["deferred_reason"] == "skip_baseline is set"
    owed = (run_dir / "deferred-baseline-utterances.txt").read_text().splitlines()
    assert len([line for line in owed if line.startswith("u")]) == 4 == len(m["bench"]["deferred_incumbent"])
    voxbench = str(BIN / "voxbench")
    early = subprocess.run([voxbench, "score", str(run_dir), "--abandon"], capture_output=True, text=True)
    assert early.returncode == 1 and "voxbench baseline resume" in early.stderr
    first = subprocess.run(
        [voxbench, "baseline", "resume", str(run_dir), "--limit", "1"], capture_output=True, text=True
    )
    assert first.returncode == 0 and "1 of 4 incumbent takes saved (1 now)" in first.stdout, first.stderr
    rest = subprocess.run(
        [str(BIN / "ansible-playbook"), "baseline.yml", "-e", f"run_dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert rest.returncode == 0 and "4 of 4 incumbent takes saved (3 now)" in rest.stdout, rest.stdout[-2000:]
    again = subprocess.run([voxbench, "baseline", "resume", str(run_dir)], capture_output=True, text=True)
    assert "4 of 4 incumbent takes saved (0 now)" in again.stdout  # nothing taken twice
    assert len((run_dir / "deferred-baseline.jsonl").read_text().splitlines()) == 4
    scored = subprocess.run(
        [voxbench, "score", str(run_dir), "--simulate", "1", "--abandon"], capture_output=True, text=True
    )
    assert scored.returncode == 0, scored.stderr
    assert len(sessions.load(run_dir).data["pairs"]) == 4
    from bench_py.results.retrospective import retrospective

    row = next(r for r in retrospective(documents.measurements_from(m)) if r["safeguard"] == "deferred baseline")
    assert row["status"] == "HIT"
