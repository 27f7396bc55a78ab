"""Compression of JSON answers at the gateway: br or gzip, as the client's
``Accept-Encoding`` prefers (``GATEWAY_COMPRESSION``, ``GATEWAY_COMPRESSION_MIN_BYTES``).

Hand-written around two kept codecs (``zlib`` for gzip, Google's ``brotli`` bindings):
Starlette's ``GZipMiddleware`` ignores q-values (``gzip;q=0`` still gets gzip), compresses
every content type and has no br; ``brotli-asgi`` parses ``Accept-Encoding`` the same way
and would add a dependency for what is one responder here.

Rules: only ``application/json`` and ``application/*+json`` answers (problem+json
included); never an answer that already has a ``Content-Encoding`` or says
``Cache-Control: no-transform``, nor 204/206/304, nor ``HEAD``; bodies smaller than the
threshold go out as they are (a body sent in one piece is measured, a streamed one is
compressed as it streams). Every JSON answer to a request
that asked for an encoding carries ``Vary: Accept-Encoding``. A request without
``Accept-Encoding`` (wrk, most API clients) costs one scan of the header list.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable

import brotli
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import headers as hdr

GZIP_LEVEL = 6  # zlib's default: most of level 9's ratio at a fraction of its CPU
BROTLI_QUALITY = 4  # the usual choice for dynamic content (11 is for static files)
#: Codings the gateway produces, in its order of preference on equal q-values.
CODINGS = ("br", "gzip")
_UNCOMPRESSED_STATUS = frozenset({204, 206, 304})


@functools.lru_cache(maxsize=256)  # clients send a handful of distinct values
def choose(accept_encoding: bytes, codings: tuple[str, ...] = CODINGS) -> str | None:
    """The coding to answer with for ``Accept-Encoding`` (RFC 9110 §12.5.3), or ``None``.

    The highest q-value wins, ties go to ``codings``' order; ``q=0`` refuses a coding;
    ``*`` stands for every coding not named; a malformed q-value counts as 0.
    """
    weights: dict[str, float] = {}
    for item in accept_encoding.decode("latin-1").split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        weights[name] = q
    best: str | None = None
    best_q = 0.0
    for coding in codings:
        q = weights.get(coding, weights.get("*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    return best


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json"))


def _gzip() -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer

    def feed(data: bytes) -> bytes:
        return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)

    return feed, z.flush


def _brotli() -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    c = brotli.Compressor(quality=BROTLI_QUALITY)

    def feed(data: bytes) -> bytes:
        return bytes(c.process(data)) + bytes(c.flush())

    return feed, lambda: bytes(c.finish())


_ENCODERS = {"gzip": _gzip, "br": _brotli}


def compress(body: bytes, coding: str) -> bytes:
    """``body`` compressed whole with ``coding`` (``gzip`` or ``br``)."""
    if coding == "br":
        return bytes(brotli.compress(body, quality=BROTLI_QUALITY))
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return z.compress(body) + z.flush()


class Compression:
    """ASGI middleware compressing JSON answers of at least ``min_bytes``."""

    def __init__(self, app: ASGIApp, min_bytes: int = 1024) -> None:
        self.app = app
        self.min_bytes = min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept: bytes | None = None
        if scope["type"] == "http" and scope["method"] != "HEAD":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    accept = value if accept is None else accept + b"," + value
        if accept is None:
            await self.app(scope, receive, send)
            return
        coding = choose(accept)
        responder = _Responder(send, coding, self.min_bytes)
        await self.app(scope, receive, responder.send)


class _Responder:
    """The ``send`` of one response: holds its start until the body says what to do."""

    __slots__ = ("coding", "feed", "finish", "min_bytes", "passthrough", "send_next",
                 "start")

    def __init__(self, send: Send, coding: str | None, min_bytes: int) -> None:
        self.send_next = send
        self.coding = coding
        self.min_bytes = min_bytes
        self.start: Message | None = None
        self.passthrough = False
        self.feed: Callable[[bytes], bytes] | None = None
        self.finish: Callable[[], bytes] | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers", ()))
            content_type = encoded = None
            for name, value in headers:
                lower = name.lower()
                if lower == b"content-type":
                    content_type = value
                elif lower == b"content-encoding":
                    encoded = value
                elif lower == b"cache-control" and b"no-transform" in value.lower():
                    encoded = b"identity"  # RFC 9111 §5.2.2.6: a proxy must not transform
            json_answer = content_type is not None and _is_json(content_type)
            if json_answer and encoded is None:
                hdr.add_vary(headers, b"Accept-Encoding")
            message["headers"] = headers
            if (not json_answer or encoded is not None or self.coding is None
                    or message["status"] in _UNCOMPRESSED_STATUS):
                self.passthrough = True
                await self.send_next(message)
            else:
                self.start = message  # held until the first body part
            return
        if kind != "http.response.body" or self.passthrough:
            await self.send_next(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        start, self.start = self.start, None
        if start is not None:  # the first body part decides
            coding = self.coding
            assert coding is not None
            if not more:
                if len(body) >= self.min_bytes:
                    body = compress(body, coding)
                    _encoded(start, coding, len(body))
                    message["body"] = body
                await self.send_next(start)
                await self.send_next(message)
                return
            self.feed, self.finish = _ENCODERS[coding]()
            _encoded(start, coding, None)
            await self.send_next(start)
        assert self.feed is not None and self.finish is not None
        out = self.feed(body) if body else b""
        if not more:
            out += self.finish()
        message["body"] = out
        await self.send_next(message)


def _encoded(start: Message, coding: str, length: int | None) -> None:
    """Mark the held start as ``coding``-encoded; ``length``: the new Content-Length
    (``None``: streamed, no length)."""
    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-encoding", coding.encode()))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    start["headers"] = headers
