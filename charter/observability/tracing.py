"""OpenTelemetry tracing for every Charter process (``docs/observability.md``).

Three modes, chosen once per process by :func:`install` (every app factory calls it):

* **off** (the default: no ``OTEL_EXPORTER_OTLP_ENDPOINT``): no SDK. Spans are the
  OpenTelemetry API's non-recording spans, which cost a few attribute look-ups, but the
  W3C context still travels: an incoming ``traceparent`` is extracted by the server
  middleware, injected into outbound HTTP calls and stamped into outbox envelopes, so
  the ``trace_id`` of every JSON log line is the caller's trace.
* **on** (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set,
  or :func:`enable` from a test): an SDK :class:`TracerProvider` per service with
  ``service.name`` in its resource, a ``ParentBased(TraceIdRatioBased(ratio))`` sampler
  (``OTEL_TRACES_SAMPLER_ARG``, default :data:`DEFAULT_RATIO`; a standard
  ``OTEL_TRACES_SAMPLER`` wins) and
  a :class:`BatchSpanProcessor` feeding the OTLP/HTTP exporter (it reads the standard
  ``OTEL_EXPORTER_OTLP_*`` variables itself).
* **disabled** (``OTEL_SDK_DISABLED=true``): not even the context is read or continued
  by the server middleware (logs then have no ``trace_id``).

One process may host several services (tests build them side by side), so the global
tracer provider is a router: a span belongs to the service in :data:`current_service`
(set by the server middleware, the message consumer and the relay), else to the
process's own service (the first :func:`install`).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

from charter.config import ConfigError

current_service: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "charter_trace_service", default=None)
"""The service a span started now belongs to (several services may share a process)."""

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACER_NAME = "charter"
DEFAULT_RATIO = 0.1
"""New traces kept when ``OTEL_TRACES_SAMPLER_ARG`` is unset: exporting every trace costs
the governed read far more than the 10 % budget (``docs/observability.md``); a caller's
sampled ``traceparent`` is always followed (parent-based)."""

_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()
_process_service: str | None = None
_processors: list[Any] = []  # SDK SpanProcessors shared by every service's provider
_providers: dict[str, Any] = {}  # service -> SDK TracerProvider
_sampler: Any = None
_switched_off = False  # OTEL_SDK_DISABLED=true at install: not even context propagation
_NOOP = trace.NoOpTracer()


class _HeaderGetter(Getter[Sequence[tuple[bytes, bytes]]]):
    """Reads ASGI ``(name, value)`` byte pairs (names lower-case)."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.encode("latin-1")
        found = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return found or None

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_ASGI_GETTER = _HeaderGetter()


def enabled() -> bool:
    """True when spans are recorded and exported (SDK set up)."""
    return bool(_processors)


def sampling_ratio(env: Mapping[str, str] | None = None) -> float:
    """``OTEL_TRACES_SAMPLER_ARG`` as a ratio in [0, 1] (default :data:`DEFAULT_RATIO`);
    fails closed."""
    raw = (env if env is not None else os.environ).get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if not raw:
        return DEFAULT_RATIO
    try:
        ratio = float(raw)
    except ValueError:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a number in [0, 1], not {raw!r}") \
            from None
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be in [0, 1], not {raw!r}")
    return ratio


def _make_sampler() -> Any:
    from opentelemetry.sdk.trace import sampling

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()  # the standard variable, as the SDK reads it
    return sampling.ParentBased(sampling.TraceIdRatioBased(sampling_ratio()))


def _provider(service: str) -> Any:
    provider = _providers.get(service)
    if provider is None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        with _lock:
            provider = _providers.get(service)
            if provider is None:
                provider = TracerProvider(
                    sampler=_sampler,
                    resource=Resource.create({"service.name": service,
                                              "service.namespace": "charter"}),
                    shutdown_on_exit=False)
                for processor in _processors:
                    provider.add_span_processor(processor)
                _providers[service] = provider
    return provider


def tracer_for(service: str | None = None, name: str = TRACER_NAME) -> Tracer:
    """The tracer of ``service`` (default: :data:`current_service`, else the process's);
    the API's no-op tracer when tracing is off."""
    if not _processors:
        return _NOOP
    svc = service or current_service.get() or _process_service or "charter"
    tracer: Tracer = _provider(svc).get_tracer(name)
    return tracer


class _RoutingTracer(Tracer):
    """Starts each span on the tracer of the service running now (see the module doc)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def start_span(self, name: str, context: otel_context.Context | None = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: types.Attributes = None,
                   links: Any = None, start_time: int | None = None,
                   record_exception: bool = True,
                   set_status_on_exception: bool = True) -> Span:
        return tracer_for(name=self._name).start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception)

    @_agnosticcontextmanager
    def start_as_current_span(self, name: str, context: otel_context.Context | None = None,
                              kind: SpanKind = SpanKind.INTERNAL,
                              attributes: types.Attributes = None, links: Any = None,
                              start_time: int | None = None, record_exception: bool = True,
                              set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Iterator[Span]:
        with tracer_for(name=self._name).start_as_current_span(
                name, context, kind, attributes, links, start_time, record_exception,
                set_status_on_exception, end_on_exit) as span:
            yield span


class _RoutingTracerProvider(trace.TracerProvider):
    """The global provider: hands out :class:`_RoutingTracer` (instrumentation libraries
    ask the global provider once, at instrumentation time)."""

    def get_tracer(self, instrumenting_module_name: str,
                   instrumenting_library_version: str | None = None,
                   schema_url: str | None = None,
                   attributes: types.Attributes | None = None) -> Tracer:
        return _RoutingTracer(instrumenting_module_name)


ROUTER = _RoutingTracerProvider()
_router_set = False


def _set_router() -> None:
    global _router_set
    if not _router_set:
        trace.set_tracer_provider(ROUTER)
        _router_set = True


def _disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def propagating() -> bool:
    """False only when ``OTEL_SDK_DISABLED=true`` switched tracing off entirely: the
    server middleware then neither reads nor continues the caller's context."""
    return not _switched_off


def wanted() -> bool:
    """True when spans are (or will be, at :func:`install`) recorded in this process."""
    return enabled() or (_endpoint() is not None and not _disabled())


def _endpoint() -> str | None:
    for var in ENDPOINT_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def install(service: str) -> bool:
    """Set tracing up for this process (idempotent; the first service names the process).

    Starts the SDK with the OTLP/HTTP exporter when an endpoint is configured and
    ``OTEL_SDK_DISABLED`` is not ``true``; otherwise leaves tracing off (context still
    propagates). True when tracing is on.
    """
    global _process_service, _switched_off
    _set_router()
    if _process_service is None:
        _process_service = service
    _switched_off = _disabled() and not _processors
    if _processors or _switched_off:
        return enabled()
    if _endpoint() is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    enable(BatchSpanProcessor(OTLPSpanExporter()))
    return True


def enable(*processors: Any) -> None:
    """Turn tracing on with these SDK span processors (tests pass a
    ``SimpleSpanProcessor(InMemorySpanExporter())``); replaces earlier ones."""
    global _sampler, _switched_off
    _set_router()
    _switched_off = False
    with _lock:
        _sampler = _make_sampler()
        _providers.clear()
        _processors[:] = list(processors)
    atexit.register(_shutdown_processors, list(processors))


def disable() -> None:
    """Tracing off again (spans no longer recorded); processors are shut down."""
    with _lock:
        old = list(_processors)
        _processors.clear()
        _providers.clear()
    _shutdown_processors(old)


def _shutdown_processors(processors: list[Any]) -> None:
    for processor in processors:
        with contextlib.suppress(Exception):
            processor.shutdown()


# -- propagation -------------------------------------------------------------------------
def extract_asgi(headers: Sequence[tuple[bytes, bytes]]) -> otel_context.Context:
    """The context carried by ASGI request headers (``traceparent``/``tracestate``)."""
    return _propagator.extract(headers, getter=_ASGI_GETTER)


def extract_traceparent(traceparent: str | None) -> otel_context.Context | None:
    """The context of a stored ``traceparent`` (``None`` when absent or invalid)."""
    if not traceparent:
        return None
    ctx = _propagator.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def traceparent_of(span: Span | None = None) -> str | None:
    """The W3C ``traceparent`` of ``span`` (default: the current span), if valid."""
    sc = (span or trace.get_current_span()).get_span_context()
    if not sc.is_valid:
        return None
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as hex, ``None`` outside any trace."""
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"


# -- spans of our own --------------------------------------------------------------------
@contextlib.contextmanager
def step_span(step: str, *, compensation: bool = False,
              attributes: types.Attributes = None) -> Iterator[Span]:
    """A span for one checkout saga step or compensation (``saga.step`` attribute, and
    ``saga.id`` while a saga runs)."""
    from charter.observability.logs import saga_id

    attrs: dict[str, Any] = {"saga.step": step, "saga.compensation": compensation}
    saga = saga_id.get()
    if saga is not None:
        attrs["saga.id"] = saga
    if attributes:
        attrs.update(attributes)
    kind = "compensate" if compensation else "step"
    with tracer_for().start_as_current_span(f"saga {kind} {step}", attributes=attrs) as span:
        yield span


@contextlib.contextmanager
def producer_span(service: str, routing_key: str,
                  traceparent: str | None) -> Iterator[str | None]:
    """A PRODUCER span for publishing one event, child of the context the event was
    written in; yields the ``traceparent`` the message should carry (the span's when
    recorded, else ``traceparent`` unchanged)."""
    if not _processors:
        yield traceparent
        return
    token = current_service.set(service)
    try:
        parent = extract_traceparent(traceparent)
        with tracer_for(service).start_as_current_span(
                f"{routing_key} publish", context=parent, kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "rabbitmq",
                            "messaging.operation.type": "publish",
                            "messaging.destination.name": routing_key}) as span:
            yield traceparent_of(span) or traceparent
    finally:
        current_service.reset(token)


@contextlib.contextmanager
def consumer_span(service: str, queue: str, event_type: str, message_id: str,
                  traceparent: str | None) -> Iterator[Span]:
    """A CONSUMER span for handling one message, child of the producer's context."""
    token = current_service.set(service)
    parent = extract_traceparent(traceparent)
    try:
        with tracer_for(service).start_as_current_span(
                f"{queue} process", context=parent, kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "rabbitmq",
                            "messaging.operation.type": "process",
                            "messaging.destination.name": queue,
                            "messaging.message.id": message_id,
                            "charter.event.type": event_type}) as span:
            yield span
    finally:
        current_service.reset(token)


def instrument_httpx(client: Any) -> None:
    """Client spans and ``traceparent`` injection on an ``httpx`` client."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _set_router()
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=ROUTER)


def instrument_engine(engine: Any) -> bool:
    """A span per SQL statement on a SQLAlchemy engine (no SQL comments added), only when
    tracing is on or configured (:func:`wanted`): the instrumentation reads the engine's
    URL and names the span on every statement, recording or not. True if instrumented."""
    if not wanted():
        return False
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    _set_router()
    # Pool usage is Prometheus' job here: the connection counter goes to a no-op meter.
    usage = NoOpMeter("charter").create_up_down_counter("db.client.connections.usage")
    EngineTracer(ROUTER.get_tracer("opentelemetry.instrumentation.sqlalchemy"), engine,
                 connections_usage=usage)
    return True
