"""Session-wide real parts: the Docker daemon, stand-in images, the reference clip, servers."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench_py.audio import read_wav_file
from bench_py.standins.reference import synthesize_reference
from tests.helpers import running_server

#: Every container a test session starts carries this label key, unique to the session: its end
#: removes what it left, and never what another session (a concurrent run on a shared daemon) runs.
TEST_RUN_LABEL = f"io.voxbench.test-run.{uuid.uuid4().hex[:12]}"


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--background-load",
        action="store_true",
        help="keep one core busy with an unrelated process for the whole session (unpinned, as another "
        "program on the user's machine would): the gate, pipeline and fault tests must pass beside it",
    )


#: The unrelated busy process of --background-load, and when it started.
_BACKGROUND: dict[str, float | subprocess.Popen[bytes]] = {}


def pytest_sessionstart(session) -> None:
    if session.config.getoption("--background-load", default=False):
        # A plain busy loop in its own session, on no CPU in particular: the scheduler moves it where it
        # likes, the co-tenant's CPU included. Not niced: another program competes at the same priority.
        _BACKGROUND["process"] = subprocess.Popen(
            [sys.executable, "-c", "while True: pass"], start_new_session=True, stdin=subprocess.DEVNULL
        )
        _BACKGROUND["started"] = time.monotonic()


def _background_share() -> str | None:
    """How much of one core the background load used, ended now (its CPU time over its lifetime)."""
    process = _BACKGROUND.get("process")
    if not isinstance(process, subprocess.Popen):
        return None
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    wall_s = time.monotonic() - float(_BACKGROUND["started"])  # type: ignore[arg-type]
    process.kill()
    process.wait()
    _BACKGROUND.clear()
    return f"background load: one busy process used {100 * cpu_s / wall_s:.0f} % of a core over {wall_s:.0f} s"


def pytest_unconfigure(config) -> None:
    process = _BACKGROUND.get("process")
    if isinstance(process, subprocess.Popen):  # the session ended before its summary
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def reference_path(session_dir) -> Path:
    path = session_dir / "reference.wav"
    synthesize_reference(str(path))
    return path


@pytest.fixture(scope="session")
def reference_pcm(reference_path):
    return read_wav_file(str(reference_path))


@pytest.fixture(scope="session")
def reference_data_url(reference_path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(reference_path.read_bytes()).decode()


@pytest.fixture(scope="session")
def upstream_wheels() -> dict[str, Path]:
    """The pinned vLLM-Omni releases' wheels from the package index (sha256-checked, cached)."""
    from bench_py.standins import upstream

    return {version: upstream.ensure_wheel(version) for version in upstream.RELEASES}


@pytest.fixture(scope="session")
def candidate_url(session_dir, upstream_wheels):
    """The candidate stand-in (espeak-ng behind vLLM-Omni 0.30's API) with live knobs, playing the
    full checkpoint (it can clone; the open weights cannot: see test_conformance)."""
    with running_server(
        "bench_py.standins.tts_server",
        "--engine",
        "espeak-ng",
        "--admin",
        "--encoder-weights",
        "--upstream",
        str(upstream_wheels["0.30.0"]),
        "--model",
        "voxbench-candidate",
        log_dir=session_dir,
    ) as url:
        yield url


@pytest.fixture(scope="session")
def incumbent_token(session_dir) -> str:
    token = "incumbent-internal-token-for-tests"
    path = session_dir / "incumbent.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


@pytest.fixture(scope="session")
def incumbent_url(session_dir, incumbent_token):
    """The incumbent stand-in (flite, Chatterbox-style production API)."""
    with running_server(
        "bench_py.standins.tts_server",
        "--engine",
        "flite",
        "--api",
        "chatterbox",
        "--token-file",
        str(session_dir / "incumbent.token"),
        log_dir=session_dir,
    ) as url:
        yield url


@pytest.fixture(scope="session")
def cotenant_url(session_dir):
    with running_server("bench_py.standins.cotenant_server", log_dir=session_dir) as url:
        yield url


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:
        pytest.fail(f"the Docker daemon does not answer ({error}); `make test` starts it: run the suite that way")
    remove_leftovers_of_earlier_runs(client)
    return client


def remove_leftovers_of_earlier_runs(client) -> None:
    """Remove stopped containers (and then-empty networks) that an earlier test session left.

    A session killed mid-run, or a machine imaged while one ran, leaves its test hosts behind;
    after the daemon restarts they sit stopped under their fixed names (vbhost1, titan), and this
    session could not create its own. Running ones may be a concurrent session's: left alone.
    """
    prefix = TEST_RUN_LABEL.rsplit(".", 1)[0] + "."
    for container in client.containers.list(all=True):
        earlier = [key for key in container.labels if key.startswith(prefix) and key != TEST_RUN_LABEL]
        if earlier and container.status != "running":
            print(f"removing {container.name}, left stopped by an earlier test session")
            container.remove(force=True)
    for network in client.networks.list():
        if any(key.startswith(prefix) for key in network.attrs.get("Labels") or {}):
            network.reload()
            if not network.attrs.get("Containers"):
                network.remove()


@pytest.fixture(scope="session")
def standin_images(docker_client):
    from bench_py.standins.images import build_standins

    return build_standins(docker_client, progress=lambda line: print(line))


@pytest.fixture(scope="session")
def test_run_label(docker_client):
    """Label for every container a test starts; anything left with it is removed at the end."""
    yield TEST_RUN_LABEL
    for container in docker_client.containers.list(all=True, filters={"label": TEST_RUN_LABEL}):
        container.remove(force=True)


@pytest.fixture(scope="session")
def production_standins(docker_client, standin_images, session_dir, test_run_label):
    """This machine's "production" for pipeline tests: the co-tenant and the incumbent, in containers."""
    from bench_py.standins.demo import incumbent_command
    from tests.helpers import free_port, wait_healthy

    token = session_dir / "prod-incumbent.token"
    token.write_text("incumbent-token-for-pipeline-tests\n")
    token.chmod(0o600)
    cotenant_port, incumbent_port = free_port(), free_port()
    containers = [
        docker_client.containers.run(
            standin_images["cotenant"],
            detach=True,
            cpuset_cpus="0",  # the co-tenant has CPU 0 to itself, as in the embedded default
            labels={test_run_label: "production"},
            ports={"8000/tcp": ("127.0.0.1", cotenant_port)},
        ),
        docker_client.containers.run(
            standin_images["tts"],
            incumbent_command(8092, "/run/secrets/incumbent_token"),
            detach=True,
            cpuset_cpus="1",
            labels={test_run_label: "production"},
            ports={"8092/tcp": ("127.0.0.1", incumbent_port)},
            volumes={str(token): {"bind": "/run/secrets/incumbent_token", "mode": "ro"}},
        ),
    ]
    wait_healthy(f"http://127.0.0.1:{cotenant_port}/health")
    wait_healthy(f"http://127.0.0.1:{incumbent_port}/health")
    yield {
        "cotenant_url": f"http://127.0.0.1:{cotenant_port}/v1/chat/completions",
        "incumbent_url": f"http://127.0.0.1:{incumbent_port}/tts",
        "incumbent_token_file": str(token),
        "cotenant_container": containers[0].name,
    }
    for container in containers:
        container.remove(force=True)


@pytest.fixture(scope="session")
def ssh_key(session_dir) -> dict[str, Path]:
    import subprocess

    key = session_dir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = session_dir / "authorized_keys"
    authorized.write_text((session_dir / "id_ed25519.pub").read_text())
    authorized.chmod(0o644)
    return {"private": key, "authorized_keys": authorized}


@pytest.fixture(scope="session")
def test_hosts(docker_client, ssh_key, test_run_label, session_dir):
    """Two systemd + sshd test hosts and one without systemd, reached over real SSH."""
    from bench_py.standins.testhost import TestHostFleet

    fleet = TestHostFleet(
        docker_client,
        ssh_key["private"],
        ssh_key["authorized_keys"],
        session_dir / "testhosts",
        labels={test_run_label: "testhost"},
        progress=print,
        shared_root=session_dir / "shared",
    )
    try:
        fleet.start({"vbhost1": True, "vbhost2": True, "vbplain": False})
    except TimeoutError as error:
        fleet.remove()
        pytest.fail(str(error))
    yield {
        "hosts": fleet.hosts,
        "inventory": fleet.inventory,
        "ssh": fleet.ssh_base,
        "image": fleet.image,
        "shared_root": session_dir / "shared",
    }
    names = set(fleet.hosts)
    fleet.remove()
    # Engines a run on a test host started live on this machine's daemon: a run that a failed
    # test left going would outlive its host and show up as every later test's orphan.
    for engine in docker_client.containers.list(all=True, filters={"label": "io.voxbench.bench=true"}):
        if engine.labels.get("io.voxbench.host") in names:
            engine.remove(force=True)


@pytest.fixture
def off_cotenant_cpu():
    """Keep this test's own processes (Ansible, ansible-runner) off CPU 0, which the co-tenant has to itself.

    As in the embedded default: honest contention must not trip the co-tenant gate.
    """
    import os

    before = os.sched_getaffinity(0)
    if len(before) > 1:
        os.sched_setaffinity(0, before - {0})
    yield
    os.sched_setaffinity(0, before)


#: Seconds spent per test file (setup, call and teardown), printed at the end: where the suite's time goes.
_AREA_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report) -> None:
    area = report.nodeid.split("::", 1)[0]
    _AREA_SECONDS[area] = _AREA_SECONDS.get(area, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    share = _background_share()
    if share:
        terminalreporter.section("background load")
        terminalreporter.write_line(share)
    if not _AREA_SECONDS:
        return
    total = sum(_AREA_SECONDS.values())
    terminalreporter.section("time per area")
    for area, seconds in sorted(_AREA_SECONDS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {100 * seconds / total:5.1f} %  {area}")
    terminalreporter.write_line(f"{total:8.1f} s  total in tests (session fixtures count where first used)")
