"""httpcore's network layer on asyncio streams, so TLS runs in the event loop's own code.

httpcore's default backend for asyncio is anyio, whose ``TLSStream`` does TLS in Python:
every read and write goes through ``ssl.MemoryBIO`` in a Python loop. Profiled in the
gateway under load (docs/performance.md) that was the largest single cost of proxying to
an mTLS service: ~23 % of the gateway's CPU. :class:`AsyncioBackend` implements httpcore's
``AsyncNetworkBackend`` on ``asyncio.open_connection`` and ``StreamWriter.start_tls``: with
uvloop (uvicorn's loop) the TLS record layer runs in uvloop's compiled SSL protocol, and on
the stock loop in asyncio's ``sslproto``. httpcore still speaks HTTP/1.1 (h11) over it.

Errors are httpcore's (``ConnectError``, ``ReadTimeout``…), as with its own backends, so
httpx maps them the same way and the gateway's 502/504 answers do not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable

# httpcore reads in 64 KiB chunks; the stream buffer allows one whole chunk.
_LIMIT = 64 * 1024


class AsyncioStream(httpcore.AsyncNetworkStream):
    """A connection as an asyncio ``StreamReader``/``StreamWriter`` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if timeout is None:
                await self._writer.drain()
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except (OSError, ssl.SSLError, RuntimeError) as exc:  # RuntimeError: closed transport
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        # Not wait_closed(): a TLS peer that never answers close_notify must not hold us.
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        transport = self._writer.transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":  # the idle connection was closed (or spoke) meanwhile
            if self._reader.at_eof() or transport.is_closing():
                return True
            sock = transport.get_extra_info("socket")
            return sock is not None and is_socket_readable(sock)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend on asyncio streams (TCP; Unix sockets are not offered)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, limit=_LIMIT,
                    local_addr=(local_address, 0) if local_address else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            with contextlib.suppress(OSError):  # asyncio sets it too; be explicit
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not used by the gateway")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
