"""Helpers shared by the exchange tests (importable: tests/exchange is on sys.path)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from charter import migrations
from charter.db import Database
from services.exchange.app import MIGRATIONS_DIR
from services.exchange.seed import RATES

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SEED_RATES = {code: rate for code, rate in RATES.items() if code != "EUR"}


def migrated(url: str) -> Database:
    """A database at ``url`` brought to the newest exchange revision."""
    migrations.upgrade("exchange", MIGRATIONS_DIR, url)
    return Database(url)


class FakeClock:
    """One settable time for the service's wall clock and the cache's monotonic clock."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return (self.current - START).total_seconds()

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Reply = tuple[int, bytes]


@dataclass
class StubServer:
    """A real HTTP server on 127.0.0.1 (random port) answering ``responder(path)``.

    ``responder`` returns (status, raw body bytes); ``delay`` seconds before answering.
    """

    responder: Callable[[str], Reply]
    delay: float = 0.0
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                stub.paths.append(self.path)
                if stub.delay:
                    time.sleep(stub.delay)
                status, data = stub.responder(self.path)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/rates"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_reply(doc: Any, status: int = 200) -> Reply:
    return status, json.dumps(doc).encode()
