"""Header handling: hop-by-hop stripping, forwarding headers, correlation ids, traceparent.

Header names are ASGI-style lower-case ``bytes``.
"""

from __future__ import annotations

import os
import re
import uuid

# RFC 9110 §7.6.1 connection-specific fields, plus the de-facto Proxy-Connection.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})

CORRELATION = b"x-correlation-id"
TRACEPARENT = b"traceparent"
_VALID_CID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

Headers = list[tuple[bytes, bytes]]


def connection_named(headers: Headers) -> set[bytes]:
    """The header names listed in ``Connection`` (they are hop-by-hop too)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return named


def is_hop_by_hop(name: bytes, named: set[bytes]) -> bool:
    """True for connection-specific fields (including any ``Proxy-*``)."""
    return name in HOP_BY_HOP or name.startswith(b"proxy-") or name in named


def correlation_id(value: bytes | None) -> bytes:
    """The incoming correlation id when well-formed, else a new one."""
    if value is not None and _VALID_CID.match(value):
        return value
    return uuid.uuid4().hex.encode()


def _hex(nbytes: int) -> bytes:
    return os.urandom(nbytes).hex().encode()


def traceparent(value: bytes | None) -> tuple[bytes, bytes]:
    """``(trace_id, traceparent to send upstream)``.

    A valid incoming W3C ``traceparent`` keeps its trace id and flags and gets a new
    parent (span) id, the gateway's; otherwise a new sampled trace starts.
    """
    if value is not None:
        m = _TRACEPARENT.match(value.strip())
        if m:
            version, trace_id, parent, flags, extra = m.groups()
            valid = (
                version != b"ff"
                and trace_id != b"0" * 32
                and parent != b"0" * 16
                and (version != b"00" or extra is None)
            )
            if valid:
                return trace_id, b"00-" + trace_id + b"-" + _hex(8) + b"-" + flags
    trace_id = _hex(16)
    return trace_id, b"00-" + trace_id + b"-" + _hex(8) + b"-01"


def forwarded_pair(value: str) -> str:
    """A ``Forwarded`` node value: IPv6 addresses quoted and bracketed (RFC 7239)."""
    if ":" in value:
        return f'"[{value}]"'
    return value


def quoted(value: str) -> str:
    """An RFC 7230 quoted-string (for ``Forwarded: host="…"``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_VERSIONED_PATH = re.compile(rb"^/v[0-9]+(?:/|$)")


def public_location(value: bytes, api: str) -> bytes:
    """A service's ``Location``/``Content-Location`` as the caller must follow it: the
    service knows only its own mount (``/v2/orders/7``); through the gateway that is
    ``/orders/v2/orders/7``. Absolute URLs and other paths pass unchanged."""
    if _VERSIONED_PATH.match(value):
        return b"/" + api.encode() + value
    return value


def add_vary(headers: list[tuple[bytes, bytes]], token: bytes) -> None:
    """Add ``token`` to the response's ``Vary`` (in place; once; ``*`` already covers it)."""
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            present = {v.strip().lower() for v in value.split(b",")}
            if token.lower() not in present and b"*" not in present:
                headers[i] = (name, value + b", " + token)
            return
    headers.append((b"vary", token))
