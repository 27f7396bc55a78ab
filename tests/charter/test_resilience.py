"""``charter.http`` + ``charter.resilience``: breaker, bulkhead, retries and their metrics,
against real local HTTP servers (``stub_server``)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from charter import resilience
from charter.http import HttpClient
from charter.observability.families import process_service
from charter.problems import ServiceUnavailable
from services.exchange.clients import HttpRateSource, RateSourceError
from tests.support.plugin import StubServer, free_port
from tests.support.polling import wait_until

Stub = Callable[..., StubServer]


def dependency() -> str:
    """A fresh dependency name: its own breaker, bulkhead and metric labels."""
    return f"dep-{uuid.uuid4().hex[:10]}"


def sample(name: str, **labels: str) -> float:
    labels.setdefault("service", process_service())  # CHARTER_SERVICE, else "unknown"
    return REGISTRY.get_sample_value(name, labels) or 0.0


def client(url: str, name: str, **options: Any) -> HttpClient:
    options.setdefault("retries", 0)
    options.setdefault("sleep", lambda _s: None)
    options.setdefault("deadline", 5.0)
    return HttpClient(url, name=name, **options)


class Switch:
    """A responder whose status can be changed during a test."""

    def __init__(self, status: int) -> None:
        self.status = status

    def __call__(self, _seen: Any) -> tuple[int, Any]:
        return self.status, {"status": self.status}


def test_breaker_opens_after_fail_max_5xx_and_then_fails_fast(stub_server: Stub) -> None:
    server = stub_server(Switch(500))
    name = dependency()
    http = client(server.url, name, fail_max=3, reset_timeout=30)
    for _ in range(3):
        assert http.get("/x").status_code == 500  # answers are returned while closed
    for _ in range(4):
        with pytest.raises(ServiceUnavailable) as info:
            http.get("/x")
        assert info.value.kind == "upstream-unavailable"
        assert "circuit breaker open" in str(info.value)
    assert len(server.seen) == 3  # nothing reached the server while open
    assert http.policy().breaker.state == "open"
    assert sample("charter_client_breaker_state", dependency=name) == 2
    assert sample("charter_client_breaker_transitions_total", dependency=name, to="open") == 1
    assert sample("charter_client_rejections_total", dependency=name, reason="breaker") == 4
    assert sample("charter_client_requests_total", dependency=name, outcome="rejected") == 4
    assert sample("charter_client_requests_total", dependency=name,
                  outcome="server_error") == 3


def test_connection_errors_open_the_breaker() -> None:
    name = dependency()
    http = client(f"http://127.0.0.1:{free_port()}", name, fail_max=2, reset_timeout=30)
    for _ in range(2):
        with pytest.raises(ServiceUnavailable) as info:
            http.get("/x")
        assert "connection failed" in str(info.value)
    with pytest.raises(ServiceUnavailable) as info:
        http.get("/x")
    assert "circuit breaker open" in str(info.value)
    assert sample("charter_client_requests_total", dependency=name, outcome="unavailable") == 2


def test_half_open_lets_one_probe_through_and_closes_on_success(stub_server: Stub) -> None:
    switch = Switch(503)
    server = stub_server(switch)
    name = dependency()
    http = client(server.url, name, fail_max=2, reset_timeout=0.3)
    for _ in range(2):
        http.get("/x")
    with pytest.raises(ServiceUnavailable):
        http.get("/x")
    assert len(server.seen) == 2
    switch.status = 200

    def probe_passes() -> bool:
        try:
            return http.get("/x").status_code == 200
        except ServiceUnavailable:
            return False  # still open: reset_timeout not elapsed

    wait_until(probe_passes, timeout=5, what="the half-open probe")
    assert len(server.seen) == 3  # exactly one probe
    assert http.policy().breaker.state == "closed"
    assert sample("charter_client_breaker_state", dependency=name) == 0
    for state in ("open", "half-open", "closed"):
        assert sample("charter_client_breaker_transitions_total", dependency=name,
                      to=state) == 1
    assert http.get("/x").status_code == 200
    assert len(server.seen) == 4


def test_a_failed_probe_opens_the_breaker_again(stub_server: Stub) -> None:
    server = stub_server(Switch(500))
    name = dependency()
    http = client(server.url, name, fail_max=1, reset_timeout=0.2)
    http.get("/x")
    assert http.policy().breaker.state == "open"

    def probe_sent() -> bool:
        with contextlib.suppress(ServiceUnavailable):
            http.get("/x")  # refused until reset_timeout, then the probe (answered 500)
        return len(server.seen) == 2

    wait_until(probe_sent, timeout=5, what="the probe")
    assert http.policy().breaker.state == "open"
    assert sample("charter_client_breaker_transitions_total", dependency=name, to="open") == 2
    with pytest.raises(ServiceUnavailable):
        http.get("/x")
    assert len(server.seen) == 2


def test_only_one_probe_while_half_open(stub_server: Stub) -> None:
    switch = Switch(500)
    server = stub_server(switch)
    name = dependency()
    http = client(server.url, name, fail_max=1, reset_timeout=0.2)
    http.get("/x")
    switch.status = 200
    wait_until(lambda: http.policy().breaker.opened_at + 0.2 < time.monotonic(), timeout=5)
    server.set_delay(5.0)  # the probe hangs until released
    results: list[int] = []
    probe = threading.Thread(target=lambda: results.append(http.get("/x").status_code))
    probe.start()
    wait_until(lambda: len(server.seen) == 2, timeout=5, what="the probe to arrive")
    with pytest.raises(ServiceUnavailable) as info:
        http.get("/x")
    assert "half-open" in str(info.value)
    server.set_delay(0)
    probe.join(timeout=5)
    assert results == [200]
    assert http.policy().breaker.state == "closed"
    assert len(server.seen) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_client_errors_never_open_the_breaker(stub_server: Stub, status: int) -> None:
    server = stub_server(Switch(status))
    name = dependency()
    http = client(server.url, name, fail_max=2, reset_timeout=30)
    for _ in range(6):
        assert http.get("/x").status_code == status
    assert len(server.seen) == 6
    assert http.policy().breaker.state == "closed"
    assert sample("charter_client_requests_total", dependency=name,
                  outcome="client_error") == 6


def test_a_4xx_answer_resets_the_failure_count(stub_server: Stub) -> None:
    switch = Switch(500)
    server = stub_server(switch)
    http = client(server.url, dependency(), fail_max=2, reset_timeout=30)
    http.get("/x")
    switch.status = 404
    http.get("/x")  # the upstream answered: it is up
    switch.status = 500
    http.get("/x")
    assert http.policy().breaker.state == "closed"
    assert len(server.seen) == 3


def test_bulkhead_rejects_the_call_beyond_its_limit(stub_server: Stub) -> None:
    server = stub_server(Switch(200))
    server.set_delay(5.0)  # every call waits until released
    name = dependency()
    http = client(server.url, name, max_concurrent=2, timeout=6, deadline=6)
    statuses: list[int] = []
    workers = [threading.Thread(target=lambda: statuses.append(http.get("/slow").status_code))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    wait_until(lambda: len(server.seen) == 2, timeout=5, what="two calls in flight")
    with pytest.raises(ServiceUnavailable) as info:
        http.get("/third")
    assert "bulkhead" in str(info.value)
    assert len(server.seen) == 2  # the third never left
    assert sample("charter_client_rejections_total", dependency=name, reason="bulkhead") == 1
    server.set_delay(0)
    for worker in workers:
        worker.join(timeout=5)
    assert statuses == [200, 200]
    assert http.get("/after").status_code == 200  # slots were given back
    assert sample("charter_client_requests_total", dependency=name, outcome="success") == 3


def test_retries_only_for_idempotent_or_keyed_calls(stub_server: Stub) -> None:
    server = stub_server(Switch(503))
    name = dependency()
    http = client(server.url, name, retries=2, fail_max=100)
    assert http.get("/x").status_code == 503
    assert len(server.seen) == 3  # GET: 1 + 2 retries
    assert http.post("/x", json={}).status_code == 503
    assert len(server.seen) == 4  # POST without a key: once
    http.post("/x", json={}, headers={"Idempotency-Key": "k-1"})
    assert len(server.seen) == 7  # POST with an Idempotency-Key: retried
    http.request("PUT", "/x")  # idempotent method
    assert len(server.seen) == 10
    assert sample("charter_client_retries_total", dependency=name) == 6


def test_retry_backoff_grows_with_jitter(stub_server: Stub) -> None:
    server = stub_server(Switch(502))
    sleeps: list[float] = []
    http = client(server.url, dependency(), retries=3, backoff=0.1, fail_max=100,
                  sleep=sleeps.append)
    http.get("/x")
    assert len(sleeps) == 3
    for n, pause in enumerate(sleeps):
        assert 0.1 * 2**n <= pause <= 0.1 * 2**n + 0.1  # base·2^n plus up to base of jitter


def test_retries_stop_at_the_deadline(stub_server: Stub) -> None:
    server = stub_server(Switch(503))
    http = client(server.url, dependency(), retries=10, backoff=0.6, deadline=0.5,
                  fail_max=100, sleep=lambda _s: None)
    assert http.get("/x").status_code == 503
    assert len(server.seen) == 1  # the first pause (>= 0.6 s) would end past 0.5 s


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    name = dependency()
    key = name.upper().replace("-", "_")
    monkeypatch.setenv(f"CHARTER_BREAKER_{key}", "7,2.5")
    monkeypatch.setenv(f"CHARTER_BULKHEAD_{key}", "3")
    limits = resilience.settings_for(name, fail_max=1, reset_timeout=1, max_concurrent=1)
    assert limits == resilience.PolicySettings(7, 2.5, 3)
    monkeypatch.setenv(f"CHARTER_BREAKER_{key}", "seven")
    with pytest.raises(ValueError, match="CHARTER_BREAKER_"):
        HttpClient("http://127.0.0.1:1", name=name)


def test_defaults() -> None:
    assert resilience.settings_for(dependency()) == resilience.PolicySettings(5, 10.0, 20)


def test_exchange_falls_back_when_the_breaker_is_open(stub_server: Stub) -> None:
    """exchange's last-known-rate fallback catches this client's refusals too."""
    server = stub_server(Switch(500))
    http = client("", dependency(), fail_max=1, reset_timeout=30)
    source = HttpRateSource(f"{server.url}/rates", http=http)
    with pytest.raises(RateSourceError):
        source.fetch()  # 500: a failure, breaker opens
    with pytest.raises(RateSourceError, match="circuit breaker open"):
        source.fetch()  # refused without a request
    assert len(server.seen) == 1
