"""Helpers of the gateway tests (importable: tests/gateway is on sys.path).

``serve`` runs any ASGI app under uvicorn on 127.0.0.1 in a daemon thread, as a real
HTTP server on a free port. ``EchoUpstream`` is a tiny service that answers every
request with a JSON description of what it received (method, path, query, headers,
body size), and records it; request headers ``x-test-*`` steer its answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(app: Any, **config: Any) -> RunningServer:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a daemon thread."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "off",
                               "timeout_graceful_shutdown": 0.2}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    scheme = "https" if options.get("ssl_certfile") else "http"
    return RunningServer(f"{scheme}://127.0.0.1:{port}", server, thread, sock)


@dataclass
class EchoUpstream:
    """ASGI app answering with what it received; remembers every request."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
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
