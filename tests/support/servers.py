"""Real HTTP servers for tests: free ports, any ASGI app under uvicorn in a thread, and
waiting for a server started in a subprocess to answer."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn

from charterctl.ports import free_ports
from tests.support.polling import wait_until


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI ``http`` request (for test apps)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers started in subprocesses)."""
    return free_ports(1)[0]


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread.

    Without ``port`` the server binds a free port itself (no race with other tests).
    ``options`` go to :class:`uvicorn.Config` (TLS, ``loop``, ``http`` protocol class…);
    the URL scheme is ``https`` when ``ssl_certfile`` is among them. Use it as a context
    manager, or :func:`serve` and ``stop()``.
    """

    def __init__(self, app: Any, port: int | None = None, **options: Any) -> None:
        config: dict[str, Any] = {"log_level": "warning", "access_log": False,
                                  "lifespan": "off", "timeout_graceful_shutdown": 0.2}
        config.update(options)
        self._sock: socket.socket | None = None
        if port is None:
            self._sock = socket.socket()
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(("127.0.0.1", 0))
            port = int(self._sock.getsockname()[1])
        self.port = port
        self.scheme = "https" if config.get("ssl_certfile") else "http"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
        kwargs = {"sockets": [self._sock]} if self._sock else {}
        self.thread = threading.Thread(target=self.server.run, kwargs=kwargs, daemon=True)

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ThreadServer:
        """Start serving; return once uvicorn accepts connections (fails if it died)."""
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive() and not self.server.started:
                raise RuntimeError("uvicorn did not start")
            return bool(self.server.started)

        wait_until(started, timeout=timeout, interval=0.01, what="uvicorn to start")
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ThreadServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve(app: Any, **options: Any) -> ThreadServer:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; started."""
    return ThreadServer(app, **options).start()


def wait_until_live(url: str, process: subprocess.Popen[Any], *,
                    output: Callable[[], str] = lambda: "", timeout: float = 30.0,
                    what: str = "the server to start") -> None:
    """Poll ``<url>/health/live`` until it answers 200 (a server started in a subprocess).

    Fails at once, with ``output()`` (e.g. the process's log), if ``process`` exits first;
    fails naming ``what`` after ``timeout`` seconds.
    """

    def live() -> bool:
        assert process.poll() is None, output()
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(live, timeout=timeout, interval=0.05, what=what)
