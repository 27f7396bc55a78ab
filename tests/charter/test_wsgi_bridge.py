"""The buffered ASGI → WSGI bridge every Connexion service runs Flask behind."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from a2wsgi import WSGIMiddleware

from charter.wsgi_bridge import BufferedWSGIBridge, install

StartResponse = Callable[..., Any]
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def scope(method: str = "GET", path: str = "/x", query: bytes = b"",
          headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query, "root_path": "", "headers": headers or [],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}


def call(app: Any, sc: dict[str, Any], body_parts: Iterable[bytes] = (b"",),
         disconnect: bool = False) -> list[dict[str, Any]]:
    """Run one ASGI request; the messages the app sent."""
    sent: list[dict[str, Any]] = []
    parts = list(body_parts)

    async def receive() -> dict[str, Any]:
        if disconnect:
            return {"type": "http.disconnect"}
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(sc, receive, send))
    return sent


def echo_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    body = environ["wsgi.input"].read()
    text = (f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']} "
            f"{environ.get('HTTP_X_TEST', '')} {body.decode()} {request_id.get()} "
            f"{threading.current_thread().name.startswith('WSGI')}")
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Out", " yes ")])
    return [text.encode()]


def test_status_headers_and_body_reach_the_client() -> None:
    sent = call(BufferedWSGIBridge(echo_app),
                scope("POST", "/things", b"a=1", [(b"x-test", b"hello")]), [b"ab", b"cd"])
    assert sent[0] == {"type": "http.response.start", "status": 201,
                       "headers": [(b"content-type", b"text/plain"), (b"x-out", b"yes")]}
    assert sent[1] == {"type": "http.response.body",
                       "body": b"POST /things?a=1 hello abcd - True"}
    assert len(sent) == 2  # one start, one complete body


def test_the_app_runs_in_a_worker_thread_with_the_callers_context() -> None:
    async def main() -> list[dict[str, Any]]:
        request_id.set("req-42")
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await BufferedWSGIBridge(echo_app)(scope(), receive, send)
        return sent

    sent = asyncio.run(main())
    assert sent[1]["body"].endswith(b"req-42 True")


def test_write_callable_and_iterable_chunks_are_joined_and_close_is_called() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"two "
            yield b""
            yield b"three"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Body:
        write = start_response("200 OK", [])
        write(b"one ")
        return Body()

    sent = call(BufferedWSGIBridge(app), scope())
    assert sent[1]["body"] == b"one two three"
    assert closed == [True]


def test_an_error_in_the_app_propagates_and_the_iterable_is_closed() -> None:
    closed: list[bool] = []

    class Failing:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("boom")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Failing:
        start_response("200 OK", [])
        return Failing()

    with pytest.raises(RuntimeError, match="boom"):
        call(BufferedWSGIBridge(app), scope())
    assert closed == [True]


def test_start_response_with_exc_info_after_start_reraises() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise ValueError("late")
        except ValueError:
            import sys
            start_response("500 Error", [], sys.exc_info())
        return [b""]

    with pytest.raises(ValueError, match="late"):
        call(BufferedWSGIBridge(app), scope())


def test_an_app_that_never_starts_a_response_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        return [b"no status"]

    with pytest.raises(RuntimeError, match="start_response"):
        call(BufferedWSGIBridge(app), scope())


def test_a_client_gone_before_the_body_arrived_gets_nothing_and_the_app_is_not_run() -> None:
    ran: list[bool] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        ran.append(True)
        start_response("200 OK", [])
        return [b""]

    assert call(BufferedWSGIBridge(app), scope(), disconnect=True) == []
    assert ran == []


def test_lifespan_and_websocket() -> None:
    bridge = BufferedWSGIBridge(echo_app)
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(bridge({"type": "lifespan"}, receive, send))
    asyncio.run(bridge({"type": "websocket"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete", "websocket.close"]


def test_install_replaces_connexions_a2wsgi_bridge_keeping_the_flask_app() -> None:
    import connexion

    app = connexion.FlaskApp(__name__)
    inner = app._middleware_app
    assert isinstance(inner.asgi_app, WSGIMiddleware)
    wrapped = inner.asgi_app.app
    install(app)
    assert isinstance(inner.asgi_app, BufferedWSGIBridge)
    assert inner.asgi_app.app is wrapped
