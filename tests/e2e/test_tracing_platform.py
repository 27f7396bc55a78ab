"""One v2 checkout is one trace, across the real platform (``docs/observability.md``).

``charter up`` runs every component as its own process with
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointed at a tiny OTLP/HTTP collector started here (the
protobuf requests decoded with opentelemetry-proto), so what is checked is what a
Jaeger would receive: each process's batch exporter, spans crossing real HTTP (mutual
TLS between services) and real message delivery (the embedded broker).

The client sends its own W3C ``traceparent``; afterwards the spans of that trace id must
come from the gateway and at least five services, include every saga step of the
checkout and the loyalty and notifications consumers, form one tree (every parent is a
span of the trace, but the client's), and every span naming the order's saga must be
in it. The trace id must also be in the JSON log lines of the services.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from charter.messaging import embedded
from charter.messaging.broker import Broker, UnknownQueue
from charterctl.user_login import user_token
from services.loyalty.messaging import QUEUE as LOYALTY_QUEUE
from services.notifications.messaging import SUBSCRIPTIONS as NOTIFICATION_SUBSCRIPTIONS
from services.orders.messaging import QUEUE as ORDERS_REPLIES
from tests.support.platform import Platform, running
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

CONSUMER_QUEUES = (LOYALTY_QUEUE, ORDERS_REPLIES,
                   *(s.queue for s in NOTIFICATION_SUBSCRIPTIONS))
SAGA_STEPS = {"reserve", "authorise", "commit", "capture", "confirm"}


@dataclass(frozen=True)
class Received:
    """One span as the collector decoded it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) on a free port."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                ok = self.path == "/v1/traces" and \
                    self.headers.get("content-type") == "application/x-protobuf"
                if ok:
                    collector.add(body)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        found: list[Received] = []
        for rs in request.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {a.key: _value(a.value) for a in span.attributes}
                    found.append(Received(resource.get("service.name", "?"), span.name,
                                          span.trace_id.hex(), span.span_id.hex(),
                                          span.parent_span_id.hex(), span.kind, attrs))
        with self.lock:
            self.spans.extend(found)

    def trace(self, trace_id: str) -> list[Received]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Collector]]:
    tmp = tmp_path_factory.mktemp("tracing")
    with Collector() as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
               "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s, not 5 s
               "CHARTER_WORKERS": "1"}
        with running(tmp, extra_env=env) as platform:
            var = Path(platform.env["CHARTER_VAR_DIR"])
            with Broker(embedded.url_for(var / "broker.db")) as broker:
                wait_until(lambda: _queues_declared(broker), timeout=30, interval=0.2,
                           what="the consumers' queues")
            yield platform, collector


def _queues_declared(broker: Broker) -> bool:
    try:
        for queue in CONSUMER_QUEUES:
            broker.queue_depth(queue)
    except UnknownQueue:
        return False
    return True


def test_one_checkout_is_one_trace_across_the_services(
        traced: tuple[Platform, Collector]) -> None:
    platform, collector = traced
    gateway = platform.url("gateway")
    token = user_token(platform.url("auth"), "alice@example.com",
                       os.environ.get("DEMO_ALICE_PASSWORD", "alice-password-1"),
                       redirect_uri=f"{gateway}/ui/oauth2-redirect.html")
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with httpx.Client(timeout=10) as http:
        r = http.post(f"{gateway}/orders/v2/orders",
                      headers={**auth, "Idempotency-Key": f"trace-{uuid.uuid4().hex}",
                               "traceparent": f"00-{trace_id}-{client_span}-01"},
                      json={"items": [{"product_id": 1, "quantity": 1}],
                            "payment_method": {"type": "token", "token": "tok_visa"}})
        assert r.status_code == 202, r.text
        order_id = str(r.json()["id"])

        def follow_ups_done() -> bool:
            order = http.get(f"{gateway}/orders/v1/orders/{order_id}", headers=auth).json()
            return order.get("status") == "confirmed" and \
                order.get("loyalty_status") == "done" and \
                order.get("notification_status") == "done"

        wait_until(follow_ups_done, timeout=45, interval=0.25, what="the checkout settled")

    def complete() -> bool:
        spans = collector.trace(trace_id)
        steps = {s.attributes.get("saga.step") for s in spans}
        consumers = {s.service for s in spans if s.kind == 5}  # SPAN_KIND_CONSUMER
        return steps >= SAGA_STEPS and {"loyalty", "notifications", "orders"} <= consumers

    wait_until(complete, timeout=20, interval=0.2, what="the checkout's spans exported")
    spans = collector.trace(trace_id)
    services = {s.service for s in spans}
    assert {"gateway", "orders", "catalog", "payments", "loyalty", "notifications"} <= services
    assert len(services - {"gateway"}) >= 5

    # One tree: every span's parent is a span of this trace, except the client's call.
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id not in ids]
    assert {s.parent_id for s in roots} == {client_span}, roots
    assert [s.service for s in roots] == ["gateway"]

    # Every span of the order's saga, in any process, is in this one trace.
    of_saga = [s for s in collector.spans if s.attributes.get("saga.id") == order_id]
    assert of_saga and {s.trace_id for s in of_saga} == {trace_id}

    # Hops: HTTP server spans in each service, a publish span whose consumer is its child.
    servers = {s.service for s in spans if s.kind == 2}  # SPAN_KIND_SERVER
    assert {"gateway", "orders", "catalog", "payments"} <= servers
    by_id = {s.span_id: s for s in spans}
    consumed = [s for s in spans if s.kind == 5 and s.service == "loyalty"]
    assert any(by_id[s.parent_id].kind == 4 and by_id[s.parent_id].service == "orders"
               for s in consumed)  # SPAN_KIND_PRODUCER, published by orders' relay
    assert any(s.name.startswith(("SELECT", "INSERT", "UPDATE")) or
               "db.system" in s.attributes or "db.system.name" in s.attributes
               for s in spans)  # SQL statements too

    # The trace id is in the services' JSON log lines.
    logged = platform.log.read_text(errors="replace")
    assert logged.count(f'"trace_id": "{trace_id}"') >= 5
