"""A tiny real HTTP server on 127.0.0.1 for adapter tests (one for every service's tests).

``StubServer(responder)`` answers every request with ``responder(seen)`` — a ``(status,
payload)`` pair where ``payload`` is JSON-able, raw ``bytes`` or ``None`` — after an
optional ``delay``. ``seen`` records each request (method, path, headers, body) so tests
assert what the adapter really sent. Use it as a context manager or call ``close()``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.problems import PROBLEM


@dataclass
class Seen:
    """One request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)


Reply = tuple[int, Any]
Responder = Callable[[Seen], Reply]


@dataclass
class StubServer:
    """Answers every request with ``responder(seen)`` after ``delay`` seconds."""

    responder: Responder
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        stub = self
        self._release = threading.Event()
        self._release.set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body)
                stub.seen.append(seen)
                if stub.delay:
                    stub._release.wait(stub.delay)
                status, payload = stub.responder(seen)
                if isinstance(payload, bytes):
                    data = payload
                else:
                    data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    ctype = stub.content_type if status < 400 else PROBLEM
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        if self.delay:
            self._release.clear()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [s.path for s in self.seen]

    def set_delay(self, delay: float) -> None:
        """Answer every later request after ``delay`` seconds (``close()`` releases them)."""
        self.delay = delay
        if delay:
            self._release.clear()
        else:
            self._release.set()

    def close(self) -> None:
        """Release delayed requests and stop the server."""
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
