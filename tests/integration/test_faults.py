"""Faults injected for real during whole runs (docs/faults.md lists each with its test). For each,
the expected end state is written first, then asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench_py.audio import read_wav_file
from bench_py.config.model import default_config, load_file
from bench_py.measure import cotenant as cotenant_probe
from bench_py.processes import RUN_ID_VARIABLE
from bench_py.run.state import StateStore
from tests.helpers import bench_containers, fill_disk, free_port, small_tmpfs, wait_healthy
from tests.integration.test_gate import (
    BIN,
    host_measurements,
    start_cli,
    start_playbook,
    wait_for_state,
    wait_for_timed_requests,
    wait_terminal,
)

pytestmark = pytest.mark.docker


def processes_naming(run_id: str) -> dict[int, list[str]]:
    """Every process on this machine that names the run: its id in its argv (the run's shell, the
    host-side run, its closing step) or its environment (what the run started: the 2B engine, 2D
    commands). The tmux server is left out: every session shares it, and it keeps the argv of
    whichever client started it."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            environ = (proc / "environ").read_bytes().split(b"\0")
            comm = (proc / "comm").read_text().strip()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if comm.startswith("tmux: server") or state == "Z":
            continue
        if run_id in " ".join(argv) or f"{RUN_ID_VARIABLE}={run_id}".encode() in environ:
            found[int(proc.name)] = argv
    return found


def orphan_processes(run_id: str, within_s: float = 20) -> dict[int, list[str]]:
    """The run's processes still there ``within_s`` after it ended (its own process exits a moment
    after writing its last document): {} when none is left."""
    deadline = time.monotonic() + within_s
    while (found := processes_naming(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_candidate_container_killed_mid_run_aborts_and_tears_down(bench_env, docker_client):
    """Expected: ERROR_ABORTED by engine_failure from BENCHING; teardown verified; no container;
    the controller exits non-zero; the co-tenant within bounds afterwards."""
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}}
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    (engine,) = docker_client.containers.list(filters={"label": f"io.voxbench.run-id={run_id}"})
    engine.kill()  # SIGKILL from outside, as an OOM killer or an operator would
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "engine_failure" and "exit code 137" in data["reason"]
    assert [h["to"] for h in data["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert data["teardown"]["removal"]["run_processes"] == {"found": [], "remaining": [], "verified": True}
    assert orphan_processes(run_id) == {}
    assert data["teardown"]["postflight"]["ok"]
    assert "engine_failure" in output


def test_a_hanging_engine_times_out_and_the_verdict_is_inconclusive(bench_env, docker_client):
    """Expected: every timed candidate request ends at the 1 s read timeout and is recorded as a
    timeout (none dropped); the run itself completes (DONE) and the verdict is inconclusive, row 1."""
    command = [*default_config()["candidate"]["command"], "--first-audio-delay-ms", "3000"]
    config = {
        "candidate": {**bench_env["config"]["candidate"], "command": command, "install_paths": ["2A"]},
        "bench": {**bench_env["config"]["bench"], "timeouts": {"read": 1.0}},
    }
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    process.communicate(timeout=240)
    (run_dir,) = (bench_env["tmp"] / "runs").iterdir()
    data = json.loads((run_dir / "measurements.json").read_text())
    timed = [r for r in data["bench"]["records"]["candidate"] if not r["warmup"]]
    assert timed and all(r["timed_out"] and not r["ok"] for r in timed)
    assert all(1000 <= r["total_ms"] < 2500 for r in timed)  # ended by the read timeout, not the engine
    assert data["final_state"] == "DONE" and data["bench"]["phase3_passed"] is False
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "inconclusive" and verdict["row"] == 1
    assert "timed out" in verdict["reason"]
    assert bench_containers(docker_client) == [] and orphan_processes(run_dir.name) == {}


@pytest.fixture
def own_cotenant(docker_client, standin_images, test_run_label):
    """A co-tenant this test may let die (the session's production one stays up for the others)."""
    port = free_port()
    container = docker_client.containers.run(
        standin_images["cotenant"],
        detach=True,
        cpuset_cpus="0",
        labels={test_run_label: "fault-cotenant"},
        ports={"8000/tcp": ("127.0.0.1", port)},
    )
    wait_healthy(f"http://127.0.0.1:{port}/health")
    yield {"url": f"http://127.0.0.1:{port}/v1/chat/completions", "container": container}
    container.remove(force=True)


def test_a_cotenant_that_dies_is_reported_and_never_restarted(bench_env, docker_client, own_cotenant):
    """Expected: the gate sees it stop answering and aborts the run (ERROR_ABORTED from BENCHING,
    teardown verified); post-flight reports the co-tenant did not come back; voxbench does not
    restart it (it never starts what it did not stop): the container is still stopped."""
    cotenant = {
        **bench_env["config"]["cotenant"],
        "url": own_cotenant["url"],
        "control": {"kind": "container", "name": own_cotenant["container"].name},
        "postflight_window_s": 3,
    }
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}, "cotenant": cotenant}
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    own_cotenant["container"].stop(timeout=1)  # production's LLM dies on its own
    process.communicate(timeout=180)
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "cotenant_gate" and "unreachable" in data["reason"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert data["teardown"]["postflight"]["ok"] is False
    assert orphan_processes(run_id) == {}
    assert data["cotenant"]["paused"] is None  # voxbench had not paused it ...
    own_cotenant["container"].reload()
    assert own_cotenant["container"].status == "exited"  # ... so it did not restart it


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_to_the_host_side_run_is_an_operator_abort(bench_env, docker_client, signum):
    """Expected: SIGTERM (kill, a service manager) or SIGINT to the run's shell on the host raises
    the abort flag; the phases tear down to ERROR_ABORTED (by operator); the shell waits for them
    and then exits; the controller following the run reports the abort."""
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}}
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    store = StateStore(bench_env["config"]["paths"]["state_dir"])
    shell = store.load(run_id).changes["dispatcher"]["pid"]
    os.kill(shell, signum)
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0 and "operator abort" in output
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert data["abort"]["by"] == "operator" and "sent a signal" in data["reason"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert orphan_processes(run_id) == {}
    assert data["teardown"]["postflight"]["ok"]


def test_a_disk_that_fills_up_mid_run_aborts_and_keeps_every_whole_file(bench_env, docker_client):
    """Expected: the host's state directory is a small disk that something else fills during
    BENCHING. The first write that meets it (a WAV, the progress in the state file) aborts the
    run by disk_full: the reserve is released, the requests already taken are kept in a partial
    bench.json with their WAVs, teardown removes the engine and the co-tenant is within bounds;
    no file is half there and no temporary is left; the file that filled the disk is untouched."""
    state_dir = bench_env["tmp"] / "state"
    config = {
        "bench": {**bench_env["config"]["bench"], "repetitions": 20},
        "preflight": {"min_free_disk_gb": 0.005, "disk_reserve_mb": 4},
    }
    with small_tmpfs(state_dir, "16m"):
        process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
        run_id = wait_for_state(bench_env, {"BENCHING"})
        wait_for_timed_requests(bench_env, run_id)
        filled = fill_disk(state_dir)  # a log growing beside the run, say
        output, _ = process.communicate(timeout=180)
        assert process.returncode != 0 and "disk is full" in output
        assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
        run_dir = state_dir / "runs" / run_id
        data = host_measurements(bench_env, run_id)
        assert data["abort"]["by"] == "disk_full" and "No space left on device" in data["reason"]
        assert data["abort"]["evidence"]["reserve_released_bytes"] == 4 << 20
        assert data["abort"]["evidence"]["path"].startswith(str(run_dir))  # the WAV or state it was writing
        assert [h["to"] for h in data["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
        assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
        assert orphan_processes(run_id) == {}
        assert data["teardown"]["postflight"]["ok"]
        kept = data["bench"]
        assert kept["partial"] and kept["phase3_passed"] is False
        timed = [r for r in kept["records"]["candidate"] if not r["warmup"]]
        assert len(timed) >= 20 and all(r["ok"] for r in timed)  # the first utterance's, at least
        wavs = [r["wav"] for rs in kept["records"].values() for r in rs if r.get("wav")]
        assert wavs
        for record in (r for rs in kept["records"].values() for r in rs if r.get("wav")):
            assert len(read_wav_file(str(run_dir / record["wav"])).samples) == record["samples"]
        on_disk = {str(p.relative_to(run_dir)) for p in (run_dir / "wavs").rglob("*.wav")}
        assert on_disk == set(wavs)  # every WAV whole and accounted for; none half-written
        assert [p.name for p in run_dir.rglob(".*")] == []  # no temporary, the reserve released
        verdict = json.loads((run_dir / "verdict.json").read_text())
        assert verdict["verdict"] == "inconclusive" and verdict["row"] == 1
        assert (state_dir / "filler.bin").stat().st_size == filled
        # The full disk cannot hold the collector's pack: the run is fetched file by file, all of it.
        assert "fetching file by file" in output
        collected = bench_env["tmp"] / "runs" / run_id
        on_host = {p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()}
        assert on_host <= {p.relative_to(collected) for p in collected.rglob("*") if p.is_file()}
        # The takes byte for byte (state.json and verdict.json move on after the fetch, by design).
        for wav in (p for p in on_host if p.suffix == ".wav"):
            assert (collected / wav).read_bytes() == (run_dir / wav).read_bytes(), wav
        assert not list(state_dir.glob("collect-*.tar"))  # the pack the disk cut short is gone


@pytest.fixture
def own_incumbent(docker_client, standin_images, production_standins, test_run_label):
    """An incumbent this test may take away (the session's production one stays up for the others)."""
    from bench_py.standins.demo import incumbent_command

    port = free_port()
    secret = "/run/secrets/incumbent_token"
    container = docker_client.containers.run(
        standin_images["tts"],
        incumbent_command(8092, secret),
        detach=True,
        cpuset_cpus="1",
        labels={test_run_label: "fault-incumbent"},
        ports={"8092/tcp": ("127.0.0.1", port)},
        volumes={production_standins["incumbent_token_file"]: {"bind": secret, "mode": "ro"}},
    )
    wait_healthy(f"http://127.0.0.1:{port}/health")
    yield {
        "config": {"url": f"http://127.0.0.1:{port}/tts", "token_file": production_standins["incumbent_token_file"]},
        "container": container,
        "health": f"http://127.0.0.1:{port}/health",
    }
    container.remove(force=True)


@pytest.mark.under_load
def test_an_incumbent_lost_mid_run_defers_its_remaining_takes(bench_env, docker_client, own_incumbent):
    """Expected: production's incumbent (on its own host, not voxbench's to restart) stops answering
    during its timed loop, after its first utterance. That is no reason to abort production's run:
    - the incumbent's loop stops at the loss (the request that failed and one probe that confirms it;
      no run of errors recorded as its answers), and what it gave before is kept, WAVs and all;
    - the takes it still owed are deferred, as for an incumbent that does not answer at the start:
      deferred-baseline-utterances.txt lists exactly them, and bench.json says why
      (``deferred_reason``: it stopped answering during BENCHING, and where);
    - the candidate's figures are whole (it ran first: every timed request of every utterance and
      condition, ok);
    - the run ends DONE (transition 10): teardown verified, no container, no process of the run,
      the co-tenant within bounds;
    - the verdict waits for listening (row 6) and its evidence names the deferred takes, why, and
      the command that fills them in; with the incumbent back, ``voxbench baseline resume`` takes
      exactly those, and a blind session pairs every utterance."""
    repetitions = 8
    config = {
        "bench": {**bench_env["config"]["bench"], "repetitions": repetitions},
        "incumbent": {**bench_env["config"]["incumbent"], **own_incumbent["config"]},
    }
    process = start_playbook(bench_env, "-e", "gemma_mode=parallel", config=config)
    run_id = wait_for_state(bench_env, {"BENCHING"})
    store = StateStore(bench_env["config"]["paths"]["state_dir"])
    deadline = time.monotonic() + 120
    while not ((phase := store.load(run_id).phase or {}).get("side") == "incumbent" and phase.get("utterance")):
        assert time.monotonic() < deadline and not store.load(run_id).terminal, phase
        time.sleep(0.05)
    own_incumbent["container"].kill()  # panda goes away (a crash, its network cut)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output[-3000:]
    assert wait_terminal(bench_env, run_id) == "DONE"
    run_dir = bench_env["tmp"] / "runs" / run_id  # as the controller collected it
    data = json.loads((run_dir / "measurements.json").read_text())
    assert data["history"][-1]["transition"] == 10 and data["abort"] is None
    assert data["teardown"]["removal"]["verified"] and data["teardown"]["postflight"]["ok"]
    assert bench_containers(docker_client) == [] and orphan_processes(run_id) == {}
    bench = data["bench"]
    utterances, conditions = bench["utterances"], bench["conditions"]
    every = {(u, c) for u in range(len(utterances)) for c in conditions}
    candidate = [r for r in bench["records"]["candidate"] if not r["warmup"]]
    assert len(candidate) == len(every) * repetitions and all(r["ok"] for r in candidate)
    incumbent = bench["records"]["incumbent"]
    failed = [r for r in incumbent if not r["ok"]]
    assert 1 <= len(failed) <= 3, failed  # the loss, seen once (a stop half-way may fail one more)
    assert incumbent[-1] in failed  # and nothing was asked of it after
    given = {(r["utterance"], r["condition"]) for r in incumbent if r["ok"] and r["repetition"] == 0 and r["wav"]}
    assert (0, conditions[0]) in given  # its first utterance, before the loss
    for record in (r for r in incumbent if r["ok"] and r["wav"]):
        assert len(read_wav_file(str(run_dir / record["wav"])).samples) == record["samples"]
    assert "the incumbent stopped answering during BENCHING" in bench["deferred_reason"]
    owed = {(int(line.split("\t")[0][1:]), line.split("\t")[1]) for line in bench["deferred_incumbent"]}
    assert owed and owed == every - given  # exactly what it did not give
    listed = (run_dir / "deferred-baseline-utterances.txt").read_text()
    assert "stopped answering during BENCHING" in listed and f"voxbench baseline resume {run_id}" in listed
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert (verdict["verdict"], verdict["row"]) == ("pending_listening", 6)
    assert verdict["evidence"]["deferred_incumbent"] == {
        "takes": len(owed),
        "reason": bench["deferred_reason"],
        "resume": f"voxbench baseline resume {run_id}",
    }
    # Nothing lost: with panda back, the owed takes are taken, and every utterance pairs.
    own_incumbent["container"].start()
    wait_healthy(own_incumbent["health"])
    resumed = subprocess.run(
        [str(BIN / "voxbench"), "baseline", "resume", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert f"{len(owed)} of {len(owed)} incumbent takes saved ({len(owed)} now)" in resumed.stdout, resumed.stderr
    from bench_py import documents
    from bench_py.judge import pairing

    measurements = documents.load_measurements(run_dir / "measurements.json")
    assert set(pairing.takes(run_dir, measurements)) == every


def _cotenant_p50_ms(run_dir: Path, probes: int = 5) -> float:
    """This test's own measure of the co-tenant: the p50 of a few probes, as the baseline takes them."""
    config = cotenant_probe.resolve_model(load_file(str(run_dir / "config.json")).cotenant)
    return float(cotenant_probe.measure_latency(config, probes, warmup=1)["latency_ms"]["p50"])


@pytest.mark.under_load
@pytest.mark.parametrize("fault", ["sigkill", "ctrl-c"])
def test_pause_gemma_brings_the_cotenant_back_after_a_crash_or_an_operator_abort(
    bench_env, docker_client, own_cotenant, fault
):
    """Expected, in pause-gemma (the one mode where voxbench stops production's co-tenant, so the
    one where it must bring it back), mid-BENCHING, the co-tenant stopped by the run:
    - ``sigkill``: the host-side run (``voxbench run``) is SIGKILLed, as the OOM killer or a crash
      ends it: nothing in it can react; its tmux shell's closing step closes the run (abort by
      ``process_lost``, the reason saying the process ended in BENCHING without closing the run);
    - ``ctrl-c``: Ctrl-C on the controller (``voxbench bench``) is an operator abort: abort.yml
      raises the flag, the phases tear down (abort by ``operator``), the CLI exits 130.
    Either way: ERROR_ABORTED from BENCHING; teardown verified (no container, no process of the
    run left); the co-tenant container runs again, restarted by this run's teardown (``paused``
    says restored) and answering, within 1.2x of the run's baseline p50 by the run's post-flight
    and by this test's own probes."""
    cotenant = {
        **bench_env["config"]["cotenant"],
        "url": own_cotenant["url"],
        "control": {"kind": "container", "name": own_cotenant["container"].name},
    }
    config = {"bench": {**bench_env["config"]["bench"], "repetitions": 20}, "cotenant": cotenant}
    if fault == "sigkill":
        process = start_playbook(bench_env, "-e", "gemma_mode=pause-gemma", config=config)
    else:
        process = start_cli(bench_env, config, "pause-gemma")
    run_id = wait_for_state(bench_env, {"BENCHING"})
    wait_for_timed_requests(bench_env, run_id)
    own_cotenant["container"].reload()
    assert own_cotenant["container"].status == "exited"  # paused by the run, as pause-gemma does
    if fault == "sigkill":
        (pid,) = [p for p, argv in processes_naming(run_id).items() if argv[2:4] == ["run", run_id]]
        os.kill(pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=240)
    assert wait_terminal(bench_env, run_id) == "ERROR_ABORTED"
    data = host_measurements(bench_env, run_id)
    assert [h["to"] for h in data["history"]][-2:] == ["BENCHING", "ERROR_ABORTED"]
    if fault == "sigkill":
        assert process.returncode != 0
        assert data["abort"]["by"] == "process_lost"
        assert "ended in BENCHING without closing the run" in data["reason"]
    else:
        assert process.returncode == 130 and "cancelled on the controller" in output, output[-3000:]
        assert data["abort"]["by"] == "operator" and "operator" in data["reason"]
    assert data["teardown"]["removal"]["verified"] and bench_containers(docker_client) == []
    assert data["teardown"]["removal"]["run_processes"]["verified"]
    assert orphan_processes(run_id) == {}
    assert data["cotenant"]["paused"]["restored"] is True
    restore = data["teardown"]["cotenant_restore"]
    assert restore["ok"] and restore["answered_after_s"] is not None
    post = data["teardown"]["postflight"]
    baseline = data["baseline"]["latency_ms"]["p50"]
    assert post["ok"] and post["counted_from"] == "answering again after the restart", post
    assert post["p50_ms"] <= 1.2 * baseline
    own_cotenant["container"].reload()
    assert own_cotenant["container"].status == "running"
    mine = _cotenant_p50_ms(Path(bench_env["config"]["paths"]["state_dir"]) / "runs" / run_id)
    assert mine <= 1.2 * baseline, (mine, baseline)
