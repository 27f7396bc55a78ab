"""The gateway's upstream client on aiohttp, behind the httpx transport interface.

Profiled under load, the upstream HTTP client was the largest part of the gateway's CPU
(h11, httpcore and httpx together ~38 %, docs/performance.md). Against the same local
upstream, aiohttp's client — its HTTP parser is compiled, its connector keeps idle
connections per host in O(1) — costs ~110 µs per proxied request against ~275 µs for
httpx + httpcore + h11 on :mod:`services.gateway.pool`. :class:`AiohttpTransport` is an
``httpx.AsyncBaseTransport``: the gateway keeps building ``httpx.Request`` objects and
reading ``httpx.Response`` objects (and its tests keep injecting httpx transports); only
the bytes on the wire go through aiohttp.

What it keeps of the httpx path:

* ``request.extensions[REUSED]`` says whether the request went out on a connection that
  had served an earlier one (:class:`_ReuseAwareConnector`), so
  :func:`services.gateway.upstreams.stale_connection_failure` decides retries exactly as
  before; aiohttp's own silent retry of idempotent requests is switched off
  (``ClientSession._retry_connection``, aiohttp 3.14, pinned) so every retry is the
  gateway's, counted in ``charter_gateway_upstream_retries_total``;
* errors are httpx's: ``ConnectError``/``ConnectTimeout``, ``ReadTimeout``, ``ReadError``,
  ``RemoteProtocolError`` (a connection closed before any answer says "without sending a
  response", as httpcore does), so the gateway's 502/504 answers do not change;
* nothing is added to or taken from the request: no ``User-Agent``, ``Accept``,
  ``Accept-Encoding`` or ``Content-Type`` of aiohttp's own, no cookie jar, no redirects,
  no decompression; the path and query go out exactly as encoded.
"""

from __future__ import annotations

import contextvars
import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from yarl import URL

from .pool import REUSED

# The httpx request being sent on this task: the connector marks it reused or not.
_SENDING: contextvars.ContextVar[httpx.Request | None] = contextvars.ContextVar(
    "charter_gateway_sending", default=None)

_SKIPPED = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})
_NO_RESPONSE = "Server disconnected without sending a response."


class _ReuseAwareConnector(aiohttp.TCPConnector):
    """aiohttp's connector, marking the request being sent with whether its connection
    served a request before (one weak-set look-up per request)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._served: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        request = _SENDING.get()
        if request is not None and protocol is not None:
            request.extensions[REUSED] = protocol in self._served
            self._served.add(protocol)
        return connection


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's byte stream; closing it releases the
    connection to the pool (or closes it when the body was not read to the end)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out",
                                    request=self._request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc), request=self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One upstream's connections (``url``'s origin) on an aiohttp session, made on the
    first request (it belongs to the running event loop)."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None,
                 limits: httpx.Limits) -> None:
        self.url = url
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        limits = self._limits
        fresh_only = limits.max_keepalive_connections == 0  # the retry's pool
        connector = _ReuseAwareConnector(
            ssl=self._ssl, limit=limits.max_connections or 100, limit_per_host=0,
            force_close=fresh_only,
            **({} if fresh_only else {"keepalive_timeout": limits.keepalive_expiry or 4.0}))
        session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=_SKIPPED,
            timeout=aiohttp.ClientTimeout(total=None))
        session._retry_connection = False  # the gateway decides retries (module doc)
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._new_session()
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(total=None, connect=limits.get("pool"),
                                        sock_connect=limits.get("connect"),
                                        sock_read=limits.get("read"))
        headers = [(name.decode("latin-1"), value.decode("latin-1"))
                   for name, value in request.headers.raw]
        body = request.content or None
        # DNS-discovered instance: connected to by address, TLS-verified by name
        sni = request.extensions.get("sni_hostname")
        extra: dict[str, Any] = {"server_hostname": sni} if sni else {}
        token = _SENDING.set(request)
        try:
            response = await session.request(
                request.method, URL(str(request.url), encoded=True), headers=headers,
                data=body, allow_redirects=False, timeout=timeout, compress=None, **extra)
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(_NO_RESPONSE, request=request) from exc
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            kind = (httpx.ConnectTimeout if isinstance(exc, aiohttp.ConnectionTimeoutError)
                    else httpx.ConnectError)
            raise kind(str(exc) or type(exc).__name__, request=request) from exc
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientOSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        except aiohttp.ClientResponseError as exc:  # a malformed answer
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        finally:
            _SENDING.reset(token)
        return httpx.Response(
            response.status, headers=list(response.raw_headers),
            stream=_Body(response, request), request=request,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1")})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
