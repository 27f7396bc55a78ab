"""charter.observability.tracing in one process: modes, the server span, log fields,
the outbox's captured context and the saga step spans (the whole platform:
tests/e2e/test_tracing_platform.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, create_engine
from sqlalchemy.orm import Session

from charter.config import ConfigError
from charter.messaging.envelope import Envelope
from charter.messaging.outbox import Outbox, add_outbox_table
from charter.observability import logs, tracing
from charter.observability.middleware import ObservabilityMiddleware, RequestMetrics

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on (every new trace kept), spans kept in memory; off again afterwards."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1")
    memory = InMemorySpanExporter()
    tracing.enable(SimpleSpanProcessor(memory))
    try:
        yield memory
    finally:
        tracing.disable()


def _serve(app: Any, headers: list[tuple[bytes, bytes]], path: str = "/v1/things") -> None:
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers,
             "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(app(scope, receive, send))


def _middleware(seen: list[Any], service: str = "catalog") -> ObservabilityMiddleware:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((tracing.current_ids(), tracing.current_service.get()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return ObservabilityMiddleware(inner, RequestMetrics(CollectorRegistry(), service))


def test_sampling_ratio_defaults_to_a_tenth_and_fails_closed() -> None:
    assert tracing.sampling_ratio({}) == tracing.DEFAULT_RATIO == 0.1
    assert tracing.sampling_ratio({"OTEL_TRACES_SAMPLER_ARG": "0.25"}) == 0.25
    for bad in ("lots", "1.5", "-0.1"):
        with pytest.raises(ConfigError):
            tracing.sampling_ratio({"OTEL_TRACES_SAMPLER_ARG": bad})


def test_off_by_default_yet_the_callers_trace_goes_on() -> None:
    assert not tracing.enabled()
    seen: list[Any] = []
    _serve(_middleware(seen), [(b"traceparent", TRACEPARENT.encode())])
    _serve(_middleware(seen), [])
    # The caller's trace is current in the handler (no span of ours: the caller's ids).
    assert seen[0] == ((TRACE, PARENT), "catalog")
    assert seen[1] == (None, "catalog")  # no caller's trace, none made up


def test_server_span_continues_the_caller_and_names_the_service(
        exporter: InMemorySpanExporter) -> None:
    seen: list[Any] = []
    _serve(_middleware(seen, "payments"), [(b"traceparent", TRACEPARENT.encode())])
    _serve(_middleware(seen, "payments"), [], path="/health/ready")  # not traced
    [span] = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.resource.attributes["service.name"] == "payments"
    assert f"{span.context.trace_id:032x}" == TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200
    # The handler ran inside it.
    assert seen[0][0] == (TRACE, f"{span.context.span_id:016x}")


def test_unsampled_caller_means_nothing_recorded(exporter: InMemorySpanExporter) -> None:
    _serve(_middleware([]), [(b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())])
    assert exporter.get_finished_spans() == ()  # parent-based: the caller said no


def test_log_lines_carry_trace_and_span_ids(exporter: InMemorySpanExporter) -> None:
    formatter = logs.JSONFormatter("orders")
    record = logging.LogRecord("x", logging.INFO, "", 0, "hello", (), None)
    assert "trace_id" not in json.loads(formatter.format(record))
    with tracing.tracer_for("orders").start_as_current_span("work") as span:
        doc = json.loads(formatter.format(record))
    assert doc["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert doc["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_saga_steps_and_messages_are_spans_of_one_trace(
        exporter: InMemorySpanExporter) -> None:
    token = logs.saga_id.set("order-1")
    try:
        with tracing.tracer_for("orders").start_as_current_span("POST place_order"):
            with tracing.step_span("authorise"):
                written = tracing.traceparent_of()
            with tracing.step_span("void", compensation=True):
                pass
    finally:
        logs.saga_id.reset(token)
    with tracing.producer_span("orders", "orders.OrderConfirmed", written) as sent:
        assert sent is not None and sent != written
    with tracing.consumer_span("loyalty", "loyalty.orders", "OrderConfirmed", "ev-1", sent):
        caused = Envelope.new("OrderConfirmed", {}, source="orders").caused(
            "PointsAwarded", {}, source="loyalty")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST place_order", "saga step authorise", "saga compensate void",
                          "orders.OrderConfirmed publish", "loyalty.orders process"}
    assert len({s.context.trace_id for s in spans.values()}) == 1
    step = spans["saga step authorise"]
    assert step.attributes is not None and step.attributes["saga.id"] == "order-1"
    assert spans["saga compensate void"].attributes["saga.compensation"] is True  # type: ignore[index]
    publish, consume = spans["orders.OrderConfirmed publish"], spans["loyalty.orders process"]
    assert publish.parent is not None and publish.parent.span_id == step.context.span_id
    assert consume.parent is not None and consume.parent.span_id == publish.context.span_id
    assert consume.resource.attributes["service.name"] == "loyalty"
    # An event caused while consuming carries the consumer span's context.
    assert caused.traceparent == f"00-{consume.context.trace_id:032x}-" \
        f"{consume.context.span_id:016x}-{int(consume.context.trace_flags):02x}"


def test_the_outbox_captures_the_writers_context(exporter: InMemorySpanExporter) -> None:
    metadata = MetaData()
    outbox = Outbox(add_outbox_table(metadata))
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    own = Envelope.new("Kept", {}, source="orders", traceparent=TRACEPARENT)
    tracer = tracing.tracer_for("orders")
    with Session(engine) as session, session.begin(), \
            tracer.start_as_current_span("POST place_order") as span:
        outbox.add(session, Envelope.new("OrderPlaced", {}, source="orders"), own)
    with Session(engine) as session:
        rows = outbox.pending(session, 10)
    sc = span.get_span_context()
    assert [r.envelope().traceparent for r in rows] == [
        f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}", TRACEPARENT]


def test_new_traces_are_sampled_by_ratio_but_a_sampled_caller_always_wins(
        exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    tracing.enable(SimpleSpanProcessor(exporter))  # the sampler is read when tracing starts
    seen: list[Any] = []
    _serve(_middleware(seen), [])  # a new trace: not kept at ratio 0
    _serve(_middleware(seen), [(b"traceparent", TRACEPARENT.encode())])
    [span] = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE
    assert seen[0][0] is not None  # the unsampled trace still has ids (for the logs)
