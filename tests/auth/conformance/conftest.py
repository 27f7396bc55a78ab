"""Auth served by uvicorn on a free port, driven over real HTTP by an outside client.

One server per test module: a migrated SQLite database with the suite's own clients and
user (nothing from the demo seed), real cookies (``httpx.Client``'s jar), real forms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import uvicorn
from a2wsgi import WSGIMiddleware
from conformance_support import Auth, register

from auth.app import MIGRATIONS_DIR, create_flask_app
from auth.settings import Settings
from auth.throttle import Backoff, ThrottleSettings
from charter import serve
from charter.db import Database
from charter.migrations import upgrade
from tests.support.platform import free_port


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Auth]:
    tmp = tmp_path_factory.mktemp("auth-conformance")
    url = f"sqlite:///{tmp / 'auth.db'}"
    upgrade("auth", MIGRATIONS_DIR, url)
    db = Database(url)
    register(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The suite makes many deliberate failures from one address: keep the per-IP limit
    # out of its way (the limits have their own tests).
    limits = replace(ThrottleSettings(), ip=Backoff(free=10_000))
    settings = Settings(issuer=base, audience="charter-api",
                        session_secret="conformance-session-secret-0123456789", throttle=limits)
    app = create_flask_app(db, settings)
    server = uvicorn.Server(uvicorn.Config(
        WSGIMiddleware(app), host="127.0.0.1", port=port, log_level="warning",  # type: ignore[arg-type]
        lifespan="off", **serve.uvicorn_proxy_config("auth")))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("auth did not start")
        time.sleep(0.02)
    try:
        yield Auth(base, db)
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()


