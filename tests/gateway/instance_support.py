"""Tiny real HTTP/1.1 upstream instances for the load-balancing tests.

Each :class:`Instance` is an ``asyncio`` server on the test's own event loop (starting,
killing and restarting one takes microseconds, not a uvicorn start-up), on any address
of 127.0.0.0/8 (Linux routes all of it to ``lo``): several instances can share one port
on 127.0.0.1, 127.0.0.2, 127.0.0.3… as containers behind one DNS name do. It answers
``/health/ready`` with 200 while ``ready`` (else 503) and every other request with
``{"instance": name, "host": <Host header>}``, counting them; :meth:`kill` closes the
listener and resets every open connection, like ``kill -9``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field


@dataclass
class Instance:
    """One upstream instance on ``host:port`` (port 0: a free one, fixed at start)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    ready: bool = True
    hits: int = 0
    health_hits: int = 0
    hosts_seen: set[str] = field(default_factory=set)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> Instance:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)
        return self

    async def kill(self) -> None:
        """Stop listening and reset every connection (nothing answers any more)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip()
                           for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if path == "/health/ready":
                    self.health_hits += 1
                    status = 200 if self.ready else 503
                    body = b'{"status": "ok"}' if self.ready else b'{"status": "unavailable"}'
                else:
                    self.hits += 1
                    self.hosts_seen.add(headers.get("host", ""))
                    status = 200
                    body = json.dumps({"instance": self.name,
                                       "host": headers.get("host")}).encode()
                writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()
