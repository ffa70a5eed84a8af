"""Waiting for an HTTP engine to answer its health check, for every install path that has one."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class NotReady(RuntimeError):
    """The engine did not become ready: it went away (``gone``) or the time ran out."""

    def __init__(self, reason: str, gone: bool) -> None:
        super().__init__(reason)
        self.gone = gone


def wait_http_ready(
    url: str,
    timeout_s: float,
    gone: Callable[[], str | None] = lambda: None,
    should_stop: Callable[[], None] = lambda: None,
) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited.

    ``gone`` says why the engine is no longer there (it exited), ending the wait early;
    ``should_stop`` is called between polls and raises to abandon the wait (an abort).
    """
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout_s:
        should_stop()
        why = gone()
        if why:
            raise NotReady(why, gone=True)
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.25)
    raise NotReady(f"the engine did not answer {url} within {timeout_s:g} s ({last})", gone=False)
