"""Helpers of the gateway tests (importable: tests/gateway is on sys.path).

``EchoUpstream`` is a tiny service that answers every request with a JSON description of
what it received (method, path, query, headers, body size), and records it; request
headers ``x-test-*`` steer its answer. Real servers come from the shared plugin
(``asgi_server`` fixture, :func:`tests.support.servers.serve`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import read_body


@dataclass
class EchoUpstream:
    """ASGI app answering with what it received; remembers every request."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode().lower()
            headers[name] = f"{headers[name]}, {v.decode()}" if name in headers else v.decode()
        record = {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": (scope.get("raw_path") or b"").decode(),
            "query": scope["query_string"].decode(),
            "headers": headers,
            "body_size": len(body),
            "client": scope.get("client"),
            "tls_identity": ((scope.get("extensions") or {}).get("tls") or {})
            .get("client_cert_identity"),
        }
        self.seen.append(record)
        delay = float(headers.get("x-test-delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        status = int(headers.get("x-test-status", "200"))
        out: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if headers.get("x-test-hop") == "1":
            out += [
                (b"connection", b"x-internal-hop"),
                (b"x-internal-hop", b"secret"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-authenticate", b"Basic"),
                (b"upgrade", b"h2c"),
                (b"x-kept", b"yes"),
            ]
        if headers.get("x-test-location"):
            out.append((b"location", headers["x-test-location"].encode()))
        if headers.get("x-test-big"):
            size = int(headers["x-test-big"])
            await send({"type": "http.response.start", "status": status, "headers": out})
            chunk = b"x" * 65536
            sent = 0
            while sent < size:
                part = chunk[: min(len(chunk), size - sent)]
                sent += len(part)
                await send({"type": "http.response.body", "body": part,
                            "more_body": sent < size})
            return
        payload = json.dumps(record).encode()
        out.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    @property
    def last(self) -> dict[str, Any]:
        return self.seen[-1]


def example_path(template: str) -> str:
    """A concrete path for a spec template (every parameter → ``1``)."""
    import re

    return re.sub(r"\{[^/{}]+\}", "1", template)
