"""Blind A/B listening: the page in headless Chromium, the server, the terminal mode, score.yml."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench_py.judge import session as sessions
from bench_py.run import files
from tests.helpers import ROOT, chromium, console_errors

pytestmark = pytest.mark.docker
BIN = Path(sys.executable).parent
ENGINE_WORDS = ("candidate", "incumbent", "voxtral", "chatterbox", "espeak", "flite", "festival", "mistral")


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / finished_run["run_dir"].name
    shutil.copytree(finished_run["run_dir"], copy)
    return copy


def start_server(run_dir: Path) -> tuple[subprocess.Popen, str]:
    info = run_dir / "scoring" / "server.json"
    info.unlink(missing_ok=True)
    process = subprocess.Popen(
        [str(BIN / "voxbench"), "score", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while not info.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the listening server did not write its address"
        time.sleep(0.1)
    assert oct(info.stat().st_mode & 0o777) == "0o600"  # the URL carries the token
    return process, json.loads(info.read_text())["url"]


def test_the_page_is_blind_resumable_and_reveals(run_copy):
    process, url = start_server(run_copy)
    session = sessions.load(run_copy)
    pairs = session.data["pairs"]
    try:
        with chromium() as driver:
            driver.get(url + "?listener=alice")
            wait = lambda css: _wait(driver, css)  # noqa: E731
            wait("#pair-label")
            assert driver.find_element("css selector", "#pair-label").text == f"Pair 1 of {len(pairs)}"
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
                driver.find_element("css selector", "body").send_keys("3")
                _wait_text(driver, "#saved", "Saved: B = 3")
            _wait(driver, "#reveal:not([hidden])")
            # Before the reveal, neither the DOM nor any response names an engine.
            source = driver.page_source.lower()
            assert not [w for w in ENGINE_WORDS if w in source]
            bodies = _response_bodies(driver)
            assert len(bodies) >= 3 and any(url_.endswith(".wav") for url_, _ in bodies)
            for url_, data in bodies:
                assert not [w for w in ENGINE_WORDS if w.encode() in data.lower()], url_
            assert console_errors(driver) == []
            driver.find_element("css selector", "#reveal").click()
            _wait(driver, "#revealed:not([hidden])")
            revealed = driver.find_element("css selector", "#reveal-table").text
            assert "candidate" in revealed and "incumbent" in revealed
            assert "pending_listening" in driver.find_element("css selector", "#verdict").text
        process.wait(timeout=30)  # the server stops a moment after the reveal
    finally:
        if process.poll() is None:
            process.kill()
    answers = files.read_records("scores", run_copy / "scores.jsonl")
    assert len(answers) == 2 * len(pairs) and all(a["listener"] == "alice" and not a["simulated"] for a in answers)
    assert all("side" not in a for a in answers)  # the answers themselves stay blind
    revealed = sessions.load(run_copy).data
    assert revealed["revealed_verified"] and not (run_copy / "scoring" / "sealed.json").exists()
    assert (
        sessions.mapping_digest(revealed["revealed_salt"], revealed["revealed_mapping"]) == revealed["mapping_sha256"]
    )
    verdict = files.read("verdict", run_copy / "verdict.json")
    assert verdict["verdict"] == "pending_listening"  # 2 cloned pairs < the rule's 10: the rule says so, not the page
    assert verdict["statistics"]["n"] == {"candidate": 2, "incumbent": 2}
    firsts = [revealed["revealed_mapping"][p["a"]]["side"] for p in pairs]
    assert min(firsts.count("candidate"), firsts.count("incumbent")) == len(pairs) // 2  # counterbalanced A/B


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
        try:
            body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": message["params"]["requestId"]})
        except Exception:
            out.append((url, httpx.get(url).content))
            continue
        data = base64.b64decode(body["body"]) if body.get("base64Encoded") else body["body"].encode()
        out.append((url, data))
    return out


def test_a_killed_server_loses_no_saved_answer_and_old_tokens_stop_working(run_copy):
    process, url = start_server(run_copy)
    pairs = sessions.load(run_copy).data["pairs"]
    with httpx.Client() as client:
        for pair in pairs[:2]:
            answer = {"listener": "bob", "pair": pair["pair"], "clip": pair["a"], "score": 3}
            assert client.post(url + "api/answer", json=answer).status_code == 200
        assert client.post(url + "api/answer", json={**answer, "score": 9}).status_code == 400
        assert client.post(url + "api/answer", json={**answer, "listener": "../x"}).status_code == 400
        wrong = url.rsplit("/s/", 1)[0] + "/s/not-the-token/api/state"
        assert client.get(wrong).status_code == 404
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        again, new_url = start_server(run_copy)
        try:
            old_token = url.rsplit("/s/", 1)[1]
            assert new_url.rsplit("/s/", 1)[1] != old_token  # a new server, a new token
            assert client.get(new_url.rsplit("/s/", 1)[0] + f"/s/{old_token}api/state").status_code == 404
            state = client.get(new_url + "api/state", params={"listener": "bob"}).json()
            assert set(state["progress"]["answers"]) == {p["a"] for p in pairs[:2]}
            assert client.post(new_url + "api/reveal", json={"listener": "bob"}).status_code == 409  # not complete
            clips = [client.get(f"{new_url}clip/{p[s]}.wav").content for p in pairs for s in ("a", "b")]
        finally:
            again.kill()
            again.wait(timeout=10)
    for clip in clips:  # identical format, no metadata chunk
        assert clip[:4] == b"RIFF" and clip[8:16] == b"WAVEfmt " and b"LIST" not in clip[:200]
        assert clip[22:24] == b"\x01\x00" and int.from_bytes(clip[24:28], "little") == sessions.CLIP_RATE
    assert len(files.read_records("scores", run_copy / "scores.jsonl")) == 2


def test_terminal_mode_resumes_and_reveals(run_copy):
    pairs = sessions.load(sessions.create(run_copy).run_dir).data["pairs"]
    command = [str(BIN / "voxbench"), "score", str(run_copy), "--terminal", "--listener", "carol", "--player", "true"]
    first = subprocess.run(command, input="4\nr\n3\nq\n", capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "stopped; every answer so far is saved" in first.stdout
    assert len(files.read_records("scores", run_copy / "scores.jsonl")) == 2
    rest = "\n".join(["5", "2"] * (len(pairs) - 1)) + "\n"
    second = subprocess.run(command, input=rest, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "revealed; verdict pending_listening" in second.stdout
    assert f"pair 1 of {len(pairs)}" not in second.stdout  # resumed at pair 2


def test_simulated_listeners_never_decide(run_copy):
    result = subprocess.run(
        [str(BIN / "voxbench"), "score", str(run_copy), "--simulate", "3", "--abandon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    verdict = files.read("verdict", run_copy / "verdict.json")
    assert verdict["verdict"] == "pending_listening"
    assert verdict["statistics"]["simulated_ignored"] > 0 and verdict["statistics"]["n"]["candidate"] == 0
    assert all(r["simulated"] for r in files.read_records("scores", run_copy / "scores.jsonl"))


def test_score_yml_prints_the_url_waits_and_commits_the_scores(run_copy):
    # Its own repository (created on first use): the shared run's branch stays as other tests expect it.
    checkout = run_copy.parent / "artifacts" / "checkout"
    process = subprocess.Popen(
        [
            str(BIN / "ansible-playbook"),
            "score.yml",
            "-e",
            f"run_dir={run_copy}",
            "-e",
            f"voxbench_artifacts_repo={checkout}",
            "-e",
            "voxbench_score_poll_s=1",
        ],
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
    url = json.loads(info.read_text())["url"]
    pairs = sessions.load(run_copy).data["pairs"]
    with httpx.Client() as client:
        for pair in pairs:
            for clip, score in ((pair["a"], 4), (pair["b"], 2)):
                response = client.post(
                    url + "api/answer", json={"listener": "dana", "pair": pair["pair"], "clip": clip, "score": score}
                )
                assert response.status_code == 200
        assert client.post(url + "api/reveal", json={"listener": "dana"}).status_code == 200
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    assert url in output  # printed, token included, for the user to open
    assert "revealed; verdict pending_listening" in output
    branch = [line for line in output.splitlines() if "branch voxtral-bench-" in line]
    assert branch, output[-2000:]
    origin = checkout.parent / "origin.git"
    name = branch[0].split("branch ", 1)[1].split()[0]
    changed = subprocess.run(
        ["git", "show", "--name-only", "--format=%s", name], cwd=origin, capture_output=True, text=True, check=True
    ).stdout
    assert f"docs/{run_copy.name}.scores.jsonl" in changed and f"docs/{run_copy.name}.verdict.json" in changed


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
    m = files.read("measurements", run_dir / "measurements.json")
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
    from bench_py.run.retrospective import retrospective

    row = next(r for r in retrospective(m) if r["safeguard"] == "deferred baseline")
    assert row["status"] == "HIT"
