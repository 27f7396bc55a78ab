"""``charter.http``: timeouts, correlation id, bearer token, bounded retries, 503 mapping."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from charter.http import HttpClient, create_client
from charter.observability.logs import correlation_id
from charter.problems import ServiceUnavailable
from tests.support.plugin import Seen, StubServer, free_port

Stub = Callable[..., StubServer]


@pytest.fixture
def ok(stub_server: Stub) -> StubServer:
    return stub_server(lambda seen: (200, {"path": seen.path}))


def test_correlation_id_is_propagated(ok: StubServer) -> None:
    token = correlation_id.set("cid-123")
    try:
        with create_client(ok.url) as client:
            assert client.get("/x").json() == {"path": "/x"}
    finally:
        correlation_id.reset(token)
    assert ok.seen[0].headers["x-correlation-id"] == "cid-123"


def test_no_correlation_id_outside_a_request(ok: StubServer) -> None:
    HttpClient(ok.url).get("/x")
    assert "x-correlation-id" not in ok.seen[0].headers


def test_bearer_token_is_asked_for_each_call(ok: StubServer) -> None:
    issued = iter(["t1", "t2"])
    client = HttpClient(ok.url, token=lambda: next(issued))
    client.get("/a")
    client.get("/b")
    assert [s.headers["authorization"] for s in ok.seen] == ["Bearer t1", "Bearer t2"]


def test_failing_token_source_is_503(ok: StubServer) -> None:
    def broken() -> str:
        raise RuntimeError("auth down")

    with pytest.raises(ServiceUnavailable):
        HttpClient(ok.url, token=broken).get("/x")
    assert ok.seen == []


def test_connection_refused_is_503_after_bounded_retries() -> None:
    sleeps: list[float] = []
    client = HttpClient(
        f"http://127.0.0.1:{free_port()}", retries=2, deadline=5.0, sleep=sleeps.append
    )
    with pytest.raises(ServiceUnavailable) as info:
        client.get("/x")
    assert "connection failed" in str(info.value)  # the internal detail (logged)
    assert len(sleeps) == 2  # three attempts, two pauses
    assert sleeps[1] > sleeps[0] * 0.5  # backoff grows (with jitter)


def test_timeout_is_503_within_the_deadline(stub_server: Stub) -> None:
    server = stub_server(lambda seen: (200, {}), delay=3.0)
    client = HttpClient(server.url, timeout=0.3, retries=3)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        client.get("/slow")
    elapsed = time.monotonic() - started
    assert "timeout" in str(info.value)  # the internal detail (logged)
    assert elapsed < 0.3 + 0.5, elapsed  # the deadline (= timeout) bounds the retries


def test_idempotent_requests_are_retried_on_503(stub_server: Stub) -> None:
    answers = iter([503, 503, 200])
    server = stub_server(lambda seen: (next(answers), {}))
    client = HttpClient(server.url, retries=2, deadline=5.0, sleep=lambda _s: None)
    assert client.get("/x").status_code == 200
    assert len(server.seen) == 3


def test_last_retryable_answer_is_returned_when_retries_run_out(stub_server: Stub) -> None:
    server = stub_server(lambda seen: (503, {"title": "down"}))
    client = HttpClient(server.url, retries=1, deadline=5.0, sleep=lambda _s: None)
    assert client.get("/x").status_code == 503
    assert len(server.seen) == 2


def test_non_idempotent_requests_are_not_retried(stub_server: Stub) -> None:
    server = stub_server(lambda seen: (503, {}))
    client = HttpClient(server.url, retries=3, deadline=5.0, sleep=lambda _s: None)
    assert client.post("/x", json={"a": 1}).status_code == 503
    assert len(server.seen) == 1
    client.post("/x", json={"a": 1}, retry=True)  # e.g. with an Idempotency-Key
    assert len(server.seen) == 1 + 4


def test_client_errors_are_returned_not_raised(stub_server: Stub) -> None:
    server = stub_server(lambda seen: (404, {"title": "Not Found"}))
    assert HttpClient(server.url).get("/x").status_code == 404
    assert len(server.seen) == 1


def test_create_client_has_explicit_timeouts() -> None:
    with create_client("http://127.0.0.1", timeout=1.5) as client:
        assert client.timeout.read == 1.5
        assert client.timeout.connect is not None and client.timeout.connect <= 1.5
        assert isinstance(client, httpx.Client)


def test_seen_headers_are_lowercase(ok: StubServer) -> None:
    HttpClient(ok.url).get("/x", headers={"X-Test": "1"})
    seen: Seen = ok.seen[0]
    assert seen.headers["x-test"] == "1"


def test_refused_cached_token_is_refreshed_once(stub_server: Stub) -> None:
    class Source:
        def __init__(self) -> None:
            self.current = "old"
            self.invalidated = 0

        def __call__(self) -> str:
            return self.current

        def invalidate(self) -> None:
            self.invalidated += 1
            self.current = "new"

    server = stub_server(
        lambda seen: (200, {}) if seen.headers["authorization"] == "Bearer new" else (401, {})
    )
    source = Source()
    client = HttpClient(server.url, token=source)
    assert client.get("/x").status_code == 200
    assert source.invalidated == 1
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer old", "Bearer new"]
    source.current = "bad"
    source.invalidate = lambda: None  # type: ignore[method-assign]
    assert client.get("/x").status_code == 401  # refreshed once, not in a loop
    assert len(server.seen) == 4
