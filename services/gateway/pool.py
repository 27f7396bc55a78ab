"""A connection pool for one upstream origin whose cost per request is O(1).

httpcore's ``AsyncConnectionPool`` walks every pooled connection on each request start
and close (``has_expired()`` → a ``poll`` syscall per connection): O(pool size) per
request, most of the gateway's CPU at 20 concurrent streams (issue 8). This pool keeps
httpcore's ``AsyncHTTPConnection`` (HTTP/1.1 and TLS) and does only the pooling:

- idle connections in a LIFO ``deque`` (the most recently used first: the least likely
  to have been closed by the service); acquiring checks only the connection it takes;
- a connection idle longer than ``keepalive_expiry`` is closed when it reaches the old
  end of the deque (one ``monotonic()`` comparison, no syscall);
- at ``max_connections`` a request waits its turn (FIFO) up to the ``pool`` timeout;
  a released connection, or the slot of a closed one, goes straight to the oldest waiter.

Each request is marked ``request.extensions[REUSED]``: True when its connection had
served an earlier request (docs/gateway.md, *Upstream connection pool*).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import httpcore

# Request extension: True when the request went out on a connection that had served an
# earlier request (a pooled, kept-alive one), False on a new connection.
REUSED = "charter.reused_connection"

# What a waiter is handed: a connection, or None (the slot of a closed connection: the
# waiter opens a new one).
_Slot = httpcore.AsyncHTTPConnection | None


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one origin (``scheme://host:port``).

    ``max_connections`` bounds open connections (idle + in use), ``max_keepalive`` the
    idle ones kept; ``keepalive_expiry`` is how long one may stay idle. The interface is
    the part of httpcore's pool that ``httpx.AsyncHTTPTransport`` uses:
    :meth:`handle_async_request` and :meth:`aclose`.
    """

    def __init__(self, origin: httpcore.Origin, *, ssl_context: Any = None,
                 max_connections: int = 100, max_keepalive: int = 20,
                 keepalive_expiry: float | None = 5.0,
                 network_backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.origin = origin
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._max_keepalive = max(0, max_keepalive)
        self._expiry = keepalive_expiry  # None: idle connections never expire
        self._max_idle_age = float("inf") if keepalive_expiry is None else keepalive_expiry
        self._backend = network_backend or httpcore.AnyIOBackend()
        # (connection, idle since): the newest at the right end.
        self._idle: deque[tuple[httpcore.AsyncHTTPConnection, float]] = deque()
        self._busy: set[httpcore.AsyncHTTPConnection] = set()
        self._slots = 0  # connections in use or being opened (each holds a slot)
        self._waiters: deque[asyncio.Future[_Slot]] = deque()

    def stats(self) -> dict[str, int]:
        """``idle`` connections, ``in_use`` slots (open or opening), live ``waiters``."""
        return {"idle": len(self._idle), "in_use": self._slots,
                "waiters": sum(not w.done() for w in self._waiters)}

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on a pooled or new connection; the connection goes back to
        the pool when the response stream is closed."""
        if request.url.origin != self.origin:
            raise httpcore.UnsupportedProtocol(
                f"This pool serves {self.origin}, not {request.url.origin}.")
        timeouts = request.extensions.get("timeout") or {}
        while True:
            connection, stale = await self._acquire(timeouts.get("pool"))  # holds a slot
            reused = connection is not None
            if connection is None:
                connection = self._connection()
            self._busy.add(connection)
            request.extensions[REUSED] = reused
            try:
                if stale is not None:
                    await _close(stale)
                response = await connection.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                await self._discard(connection)  # it went out of use; take another
                continue
            except BaseException:
                await self._discard(connection)
                raise
            break
        assert isinstance(response.stream, AsyncIterable)
        response.stream = _PooledStream(response.stream, self, connection)
        return response

    def _connection(self) -> httpcore.AsyncHTTPConnection:
        return httpcore.AsyncHTTPConnection(
            origin=self.origin, ssl_context=self._ssl_context,
            keepalive_expiry=self._expiry, network_backend=self._backend)

    async def _acquire(self, timeout: float | None) -> tuple[_Slot, _Slot]:
        """A slot: with a usable idle connection, or None (open a new one); and maybe a
        dead connection to close (handed over while waiting, found unusable)."""
        for old in self._expired_idle(time.monotonic()):
            await _close(old)
        while self._idle:
            connection, _ = self._idle.pop()
            if _usable(connection):
                self._slots += 1
                return connection, None
            await _close(connection)  # the service closed it, or its keep-alive ran out
        if self._slots < self._max_connections and not self._has_waiters():
            self._slots += 1
            return None, None
        handed = await self._wait(timeout)
        if handed is not None and not _usable(handed):
            return None, handed  # keeps the slot: the caller opens a new connection
        return handed, None

    def _has_waiters(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # timed out or cancelled
        return bool(self._waiters)

    async def _wait(self, timeout: float | None) -> httpcore.AsyncHTTPConnection | None:
        """Wait (FIFO) for a connection or a slot handed over by :meth:`_release`."""
        waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                connection = await waiter
        except BaseException as exc:
            waiter.cancel()  # no-op if it was handed a slot just as the wait ended:
            if not waiter.cancelled():  # pass that slot on, do not lose it
                leftover = self._hand_back(waiter.result())
                if leftover is not None:
                    await _close(leftover)
            if isinstance(exc, TimeoutError):
                raise httpcore.PoolTimeout(
                    f"No connection to {self.origin} within {timeout:g} s.") from None
            raise
        return connection

    def _hand_back(self, connection: _Slot) -> _Slot:
        """Give an unused slot (with its idle connection, if any) to the next waiter, else
        back to the pool; returns a connection the pool has no room for (to close)."""
        if self._give_to_waiter(connection):
            return None
        self._slots -= 1
        if connection is not None and len(self._idle) < self._max_keepalive:
            self._idle.append((connection, time.monotonic()))
            return None
        return connection

    def _give_to_waiter(self, connection: _Slot) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    async def _release(self, connection: httpcore.AsyncHTTPConnection) -> None:
        """Return ``connection`` (its response closed): to a waiter, to the idle deque, or
        closed. Slot bookkeeping happens before any ``await`` (cancellation-safe)."""
        self._busy.discard(connection)
        # No keep-alive (max_keepalive=0): never reused, not even by a waiter.
        reusable = self._max_keepalive > 0 and connection.is_idle()
        if self._give_to_waiter(connection if reusable else None):
            if not reusable:
                await _close(connection)
            return
        self._slots -= 1
        now = time.monotonic()
        stale = self._expired_idle(now)
        if reusable and len(self._idle) < self._max_keepalive:
            self._idle.append((connection, now))
        else:
            stale.append(connection)
        for old in stale:
            await _close(old)

    def _expired_idle(self, now: float) -> list[httpcore.AsyncHTTPConnection]:
        """Take the connections idle longer than the expiry off the old end."""
        expired = []
        while self._idle and now - self._idle[0][1] > self._max_idle_age:
            expired.append(self._idle.popleft()[0])
        return expired

    async def _discard(self, connection: httpcore.AsyncHTTPConnection) -> None:
        """Close a connection whose request failed; its slot goes to a waiter or is freed."""
        self._busy.discard(connection)
        if not self._give_to_waiter(None):
            self._slots -= 1
        await _close(connection)

    async def aclose(self) -> None:
        """Close every connection, idle or in use (the pool stays usable)."""
        closing = [c for c, _ in self._idle] + list(self._busy)
        self._idle.clear()
        for connection in closing:
            await _close(connection)

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _usable(connection: httpcore.AsyncHTTPConnection) -> bool:
    """Idle and alive: checks this one connection (its expiry, one ``poll``)."""
    return connection.is_available() and not connection.has_expired()


async def _close(connection: httpcore.AsyncHTTPConnection) -> None:
    """Close ``connection``; a failure to close a dead socket is of no interest."""
    with contextlib.suppress(Exception):
        await connection.aclose()


class _PooledStream:
    """A response body whose ``aclose()`` returns its connection to the pool (once)."""

    __slots__ = ("_stream", "_pool", "_connection")

    def __init__(self, stream: AsyncIterable[bytes], pool: UpstreamPool,
                 connection: httpcore.AsyncHTTPConnection) -> None:
        self._stream = stream
        self._pool: UpstreamPool | None = pool
        self._connection = connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await pool._release(self._connection)
