"""Starting real stand-in processes and containers for tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering {url}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = str(error)
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s ({last})")


@contextlib.contextmanager
def running_server(module: str, *args: str, log_dir: Path) -> Iterator[str]:
    """Run ``python -m module --port N args`` from this venv; yields its base URL."""
    port = free_port()
    with running_command([sys.executable, "-m", module, "--port", str(port), *args], port, log_dir) as (base, _):
        yield base


@contextlib.contextmanager
def running_command(
    argv: list[str], port: int, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a server command line that listens on ``port``; yields its base URL and process (its
    output goes to a log in ``log_dir``)."""
    log_path = log_dir / f"{Path(argv[2] if argv[1:2] == ['-m'] else argv[0]).name.rsplit('.', 1)[-1]}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health", process=process)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def bench_containers(docker_client) -> list[str]:
    from bench_py.engines.container import LABEL_BENCH

    return [c.name for c in docker_client.containers.list(all=True, filters={"label": LABEL_BENCH})]


@contextlib.contextmanager
def chromium() -> Iterator:
    """Debian's headless Chromium driven through its chromedriver (no download, no Selenium Manager).

    Console messages and network responses are logged so that tests can read them."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = "/usr/bin/chromium", "/usr/bin/chromedriver"
    for path in (binary, driver_path):
        if not Path(path).exists():
            raise RuntimeError(
                f"{path} is missing: apt-get install chromium chromium-driver (scripts/ensure-system.sh)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


class CanaryWatch:
    """Samples every process's argv and environment, and every voxbench container's inspect
    and logs, while a run goes on; remembers where the canary (or the token's path) was seen."""

    def __init__(self, canary: str, docker_client) -> None:
        self.canary, self.docker = canary, docker_client
        self.hits: list[str] = []
        self.engine_environments: list[dict[str, str]] = []
        self.samples = 0
        self.containers_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CanaryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.2)

    def sample(self) -> None:
        canary = self.canary.encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv, environ = (proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()
            except OSError:
                continue
            for label, blob in (("argv", argv), ("environ", environ)):
                if canary in blob:
                    self.hits.append(f"/proc/{proc.name}/{label}")
            if b"bench_py.standins." in argv and b"HF_TOKEN_PATH" in environ:  # a stand-in engine process
                pairs = [item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item]
                self.engine_environments.append({k.decode(): v.decode() for k, v in pairs})
        for container in self.docker.containers.list(all=True, filters={"label": "io.voxbench.run-id"}):
            self.containers_seen.add(container.name)
            try:
                if self.canary in json.dumps(container.attrs) or canary in container.logs():
                    self.hits.append(f"docker {container.name}")
            except Exception:  # removed between list and inspect
                continue
        self.samples += 1


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real filesystem of ``size`` (a tmpfs, root only) mounted at ``where``: a disk that fills."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_disk(where: Path) -> int:
    """Write a file under ``where`` until the filesystem is full; returns the bytes written."""
    written = 0
    block = b"\0" * (1 << 16)
    with open(where / "filler.bin", "wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(block)
            except OSError:
                break
        while True:  # the last, smaller blocks
            try:
                written += handle.write(b"\0" * 512)
            except OSError:
                return written
