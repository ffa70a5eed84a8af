"""Kernel receive timestamps for the streaming client: when the first audio byte reached this
machine, not when the event loop got round to reading it.

With 64 streams delivering their first audio in the same instant on a small machine, a timer read
in user space adds the event loop's queueing delay to every TTFA. The kernel stamps each packet as
it arrives (``SO_TIMESTAMPNS``), and ``recvmsg`` hands that stamp back with the bytes. This module
is an httpcore network backend that reads with ``recvmsg`` and keeps the stamp of the last read;
:func:`client` builds an httpx client on it. Plain ``http://`` only: TLS connections fall back to
reading the clock in user space (and say so in each record's ``clock`` field).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python does not export it
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


class KernelStampedStream(httpcore.AsyncNetworkStream):
    """A plain TCP stream on a non-blocking socket whose reads carry the kernel's receive time of
    their data. It owns its socket: no asyncio transport reads from it behind our back."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.last_rx_realtime_ns: int | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            with anyio.fail_after(timeout):
                while True:
                    try:
                        data, ancillary, _flags, _addr = self._sock.recvmsg(max_bytes, _ANCILLARY)
                    except (BlockingIOError, InterruptedError):
                        await anyio.wait_socket_readable(self._sock)
                        continue
                    break
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out waiting for the server") from None
        except OSError as error:
            raise httpcore.ReadError(str(error)) from None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack(payload[: _TIMESPEC.size])
                self.last_rx_realtime_ns = seconds * 1_000_000_000 + nanos
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            with anyio.fail_after(timeout):
                view = memoryview(buffer)
                while view:
                    try:
                        sent = self._sock.send(view)
                    except (BlockingIOError, InterruptedError):
                        await anyio.wait_socket_writable(self._sock)
                        continue
                    view = view[sent:]
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out sending to the server") from None
        except OSError as error:
            raise httpcore.WriteError(str(error)) from None

    async def aclose(self) -> None:
        self._sock.close()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("kernel-stamped streams are plain TCP; TLS goes through the default backend")

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info in ("client_addr", "server_addr"):
            return self._sock.getsockname() if info == "client_addr" else self._sock.getpeername()
        if info == "is_readable":
            return False
        return None


class KernelStampingBackend(httpcore.AsyncNetworkBackend):
    """Plain TCP connections with kernel receive stamps; anything else (TLS, Unix sockets) goes
    through httpcore's own backend, with user-space timing."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                family, kind, proto, _, address = infos[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for option in socket_options or ():
                        sock.setsockopt(*option)
                    if local_address:
                        sock.bind((local_address, 0))
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    try:
                        sock.connect(address)
                    except (BlockingIOError, InterruptedError):
                        await anyio.wait_socket_writable(sock)
                        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise OSError(error, f"cannot connect to {host}:{port}") from None
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from None
        return KernelStampedStream(sock)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class KernelStampingTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over the stamping backend (the same pool settings); ``https://`` goes
    through a default transport (TLS reads cannot carry kernel stamps here)."""

    def __init__(self, limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)) -> None:  # noqa: B008
        super().__init__(limits=limits)
        # httpx builds its pool without a way to pass a network backend: build the same pool with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=KernelStampingBackend(),
        )
        self._tls = httpx.AsyncHTTPTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            return await self._tls.handle_async_request(request)
        return await super().handle_async_request(request)

    async def aclose(self) -> None:
        await self._tls.aclose()
        await super().aclose()


def client(timeout: httpx.Timeout, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """An httpx client whose responses carry kernel receive stamps (see :func:`arrival`)."""
    transport = KernelStampingTransport(limits) if limits else KernelStampingTransport()
    return httpx.AsyncClient(timeout=timeout, transport=transport)


class Clock:
    """Monotonic time of the data a response just delivered: the kernel's stamp when the stream
    has one, else now. The realtime→monotonic offset is read once, next to the send time."""

    def __init__(self) -> None:
        before = time.monotonic()
        self._offset = time.time() - (before + time.monotonic()) / 2
        self.kernel = False

    def arrival(self, response: httpx.Response) -> float:
        stream = response.extensions.get("network_stream")
        stamp: int | None = getattr(stream, "last_rx_realtime_ns", None)
        now = time.monotonic()
        if stamp is None:
            return now
        self.kernel = True
        # Never later than now (a stamp is the past), never absurdly early (a stale stamp).
        return min(now, stamp / 1e9 - self._offset)
