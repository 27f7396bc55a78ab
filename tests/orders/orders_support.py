"""Helpers of the orders tests: headers, keys, and calls that read like the API."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.orders.ports import Payment

PROBLEM = "application/problem+json"
Auth = Callable[..., dict[str, str]]  # the ``auth`` fixture: auth("alice", role=...) → headers
_keys = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_key(prefix: str = "test-key") -> str:
    """A fresh Idempotency-Key (8..128 characters of the allowed alphabet)."""
    return f"{prefix}-{next(_keys):06d}-{uuid.uuid4().hex[:8]}"


def keyed(headers: dict[str, str], key: str | None = None) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key or new_key()}


def place(client: Any, headers: dict[str, str], body: dict[str, Any],
          key: str | None = None) -> Any:
    return client.post("/v1/orders", json=body, headers=keyed(headers, key))


def cancel(client: Any, headers: dict[str, str], order_id: str, key: str | None = None) -> Any:
    return client.post(f"/v1/orders/{order_id}/cancel", headers=keyed(headers, key))


def confirm(client: Any, headers: dict[str, str], order_id: str, payment_id: str,
            key: str | None = None) -> Any:
    return client.post(f"/v1/orders/{order_id}/confirm", json={"payment_id": payment_id},
                       headers=keyed(headers, key))


def payment_id() -> str:
    return "pay_" + uuid.uuid4().hex


def payment_for(order: dict[str, Any], status: str = "authorized", **changes: Any) -> Payment:
    """A payment matching ``order`` (an order document), with ``changes`` applied."""
    values: dict[str, Any] = {
        "id": payment_id(),
        "order_id": order["id"],
        "customer_id": order["customer_id"],
        "amount": order["total"],
        "currency": order["currency"],
        "status": status,
    }
    values.update(changes)
    return Payment(**values)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body


# -- a tiny real HTTP server for the adapters' tests ------------------------------------
@dataclass
class Seen:
    """One request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, Any]


@dataclass
class StubServer:
    """Answers every request with ``responder(seen)`` after ``delay`` seconds."""

    responder: Callable[[Seen], Reply]
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body)
                stub.seen.append(seen)
                if stub.delay:
                    time.sleep(stub.delay)
                status, payload = stub.responder(seen)
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    ctype = "application/json" if status < 400 else PROBLEM
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
