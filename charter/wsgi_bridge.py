"""A buffered ASGI → WSGI bridge: one hand-off to a worker thread per request.

Connexion's ``FlaskApp`` runs Flask behind ``a2wsgi.WSGIMiddleware``, which streams: the
worker thread reads the request body through the event loop and sends the status line
and every body chunk back through it (``asyncio.run_coroutine_threadsafe`` + a blocking
``future.result()`` per message). A JSON answer therefore costs at least three round
trips between the loop and the thread, each a wake-up of the other side. Profiled under
load (docs/performance.md) that hand-off was the biggest single cost of a governed read:
about a third of the service's CPU.

Charter's handlers answer JSON documents, never streams, and Connexion has already read
and validated a JSON request body before Flask sees it. :class:`BufferedWSGIBridge`
therefore reads the request body on the loop, runs the whole WSGI call in one worker
thread (in a copy of the request's context, so correlation ids and Connexion's context
variables are there), collects status, headers and body, and sends them from the loop:
one hand-off out, one back. Measured in-process on the catalog's governed read: 1,000 →
730 µs CPU per request.

Nothing streams through it: a WSGI response is held in memory until it is complete (a
bounded JSON document in every Charter service). Errors raised by the WSGI app propagate
to Connexion's exception middleware, as with a2wsgi.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from a2wsgi.wsgi import build_environ
from starlette.types import Receive, Scope, Send

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[bytes, bytes]]

# a2wsgi's default pool size: requests one process serves at the same time.
DEFAULT_THREADS = 10


class BufferedWSGIBridge:
    """An ASGI app that serves the WSGI app ``app`` from a pool of ``threads`` threads.

    ``app`` is looked up on every request (Connexion's ``add_wsgi_middleware`` replaces
    it). Lifespan events are acknowledged; websockets are closed.
    """

    def __init__(self, app: WSGIApp, threads: int = DEFAULT_THREADS) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="WSGI")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        environ = cast(dict[str, Any], build_environ(
            scope, io.BytesIO(b"".join(chunks))))  # type: ignore[arg-type]
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        status, headers, body = await loop.run_in_executor(
            self.executor, functools.partial(context.run, self._call_wsgi, environ))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _call_wsgi(self, environ: dict[str, Any]) -> tuple[int, Headers, bytes]:
        """Run the WSGI app to completion (in a worker thread)."""
        written: list[bytes] = []
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333
            started[:] = [
                int(status.split(" ", 1)[0]),
                [(name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
                 for name, value in headers],
            ]
            return written.append

        result = self.app(environ, start_response)
        try:
            for chunk in result:
                if chunk:
                    written.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        return started[0], started[1], b"".join(written)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def install(app: Any, threads: int = DEFAULT_THREADS) -> None:
    """Serve a Connexion ``FlaskApp``'s Flask app through :class:`BufferedWSGIBridge`.

    Replaces the ``a2wsgi.WSGIMiddleware`` that ``connexion.apps.flask.FlaskASGIApp``
    creates (its ``asgi_app``), keeping whatever WSGI app it wrapped.
    """
    inner = app._middleware_app
    inner.asgi_app = BufferedWSGIBridge(inner.asgi_app.app, threads)
