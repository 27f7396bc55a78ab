"""A TLS-originating relay: plain HTTP in, mutual TLS out, presenting one identity.

The Pact verifier (pact FFI) cannot present a client certificate, and every provider
listens with mutual TLS and checks internal operations' callers (certificate CN == token
``client_id``). The relay sits in front of the provider, in the test process: the verifier
talks plain HTTP to it on 127.0.0.1 and it forwards each request over mTLS with the
consumer's certificate — so the provider's real TLS and caller checks run during
verification. Hand-written (about 40 lines) because no kept library in the venv does this
as an ASGI app; it is test support only.
"""

from __future__ import annotations

import ssl

import httpx
from starlette.types import Receive, Scope, Send

from tests.support.servers import read_body

# Hop-by-hop headers (RFC 9110 §7.6.1) and those httpx recomputes for the upstream request.
_DROP_REQUEST = frozenset({b"host", b"connection", b"keep-alive", b"transfer-encoding",
                           b"te", b"upgrade", b"proxy-connection", b"content-length"})
_DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                            "content-encoding"})


class TlsRelay:
    """An ASGI app forwarding every HTTP request to ``upstream`` with ``ssl_context``."""

    def __init__(self, upstream: str, ssl_context: ssl.SSLContext, timeout: float = 10.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None  # created on the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, verify=self.ssl_context,
                                             timeout=self.timeout, follow_redirects=False)
        target = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in _DROP_REQUEST]
        response = await self._client.request(scope["method"], target, headers=headers,
                                              content=body)
        out = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in response.headers.multi_items() if k.lower() not in _DROP_RESPONSE]
        out.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": out})
        await send({"type": "http.response.body", "body": response.content})
