"""Auth served by uvicorn on a free port, driven over real HTTP by an outside client.

One server per test module: a migrated SQLite database with the suite's own clients and
user (nothing from the demo seed), real cookies (``httpx.Client``'s jar), real forms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from a2wsgi import WSGIMiddleware
from conformance_support import Auth, register

from auth.app import create_flask_app
from auth.settings import Settings
from auth.throttle import Backoff, ThrottleSettings
from charter import serve
from tests.support.plugin import ThreadServer, free_port, migrated_database


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Auth]:
    tmp = tmp_path_factory.mktemp("auth-conformance")
    db = migrated_database("auth", f"sqlite:///{tmp / 'auth.db'}")
    register(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The suite makes many deliberate failures from one address: keep the per-IP limit
    # out of its way (the limits have their own tests).
    limits = replace(ThrottleSettings(), ip=Backoff(free=10_000))
    settings = Settings(issuer=base, audience="charter-api",
                        session_secret="conformance-session-secret-0123456789", throttle=limits)
    app = create_flask_app(db, settings)
    server = ThreadServer(WSGIMiddleware(app), port=port, **serve.uvicorn_proxy_config("auth"))
    with server:
        yield Auth(base, db)
    db.dispose()
