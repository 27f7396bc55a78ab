"""Problem types on the wire: Connexion's own errors and a service's domain errors carry
registered ``type`` URIs, and clients decide on the type, never on the title."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.db import Database
from charter.http import problem_kind
from charter.problem_types import TYPES, slug_of
from charter.service import create_app
from charter.testing import TokenFactory
from services.catalog_client.client import HttpCatalogClient
from services.catalog_client.models import ReserveOutcome
from tests.support.plugin import Seen, StubServer
from tests.support.problems import assert_problem

SPECS = Path(__file__).parent / "specs"
PUBLIC = "https://portal.example.test"


@pytest.fixture
def client(tmp_path: Path, tokens: TokenFactory,
           monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CHARTER_PUBLIC_URL", PUBLIC)
    db = Database(f"sqlite:///{tmp_path / 'probe.db'}")
    app = create_app("probe", api_module="tests.charter.probe_api", db=db,
                     verifier=tokens.verifier(), spec_dir=SPECS)
    return app.test_client()


def _bearer(tokens: TokenFactory, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(scope=scope)}"}


@pytest.mark.parametrize("case, status, slug", [
    ("bad body", 400, "validation-error"),
    ("no token", 401, "unauthorized"),
    ("wrong scope", 403, "insufficient-scope"),
    ("unknown path", 404, "not-found"),
    ("wrong method", 405, "method-not-allowed"),
    ("wrong media type", 415, "unsupported-media-type"),
    ("domain 404", 404, "not-found"),
])
def test_framework_and_service_errors_have_registered_types(
        client: Any, tokens: TokenFactory, case: str, status: int, slug: str) -> None:
    read, write = _bearer(tokens, "catalog:read"), _bearer(tokens, "catalog:write")
    requests: dict[str, Callable[[], Any]] = {
        "bad body": lambda: client.post("/v1/things", json={"name": 7}, headers=write),
        "no token": lambda: client.get("/v1/things/7"),
        "wrong scope": lambda: client.get("/v1/things/7", headers=write),
        "unknown path": lambda: client.get("/v1/nowhere", headers=read),
        "wrong method": lambda: client.delete("/v1/things/7", headers=read),
        "wrong media type": lambda: client.post(
            "/v1/things", content=b"name=x",
            headers={**write, "Content-Type": "text/plain"}),
        "domain 404": lambda: client.get("/v1/things/404", headers=read),
    }
    body = assert_problem(requests[case](), status)
    assert body["type"] == f"{PUBLIC}/problems/{slug}", body
    assert body["title"] == TYPES[slug].title


# -- clients decide on the type ---------------------------------------------------------
def _stub_answers(stub: StubServer, *replies: tuple[int, Any]) -> None:
    queue = list(replies)

    def responder(_seen: Seen) -> tuple[int, Any]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    stub.responder = responder


def _catalog(stub: StubServer) -> HttpCatalogClient:
    return HttpCatalogClient(stub.url, lambda: "t", lambda: "t", timeout=1.0)


def test_a_changed_title_does_not_change_the_clients_decision(
        stub_server: Callable[..., StubServer]) -> None:
    """Titles swapped on purpose: the catalog client follows the type."""
    stub = stub_server(lambda seen: (500, None))
    order = "3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"
    shortages = [{"product_id": 2, "requested": 3, "available": 1}]
    _stub_answers(stub, (409, {"type": f"{PUBLIC}/problems/insufficient-stock",
                               "title": "Reservation exists", "status": 409,
                               "shortages": shortages}))
    result = _catalog(stub).reserve(order, [(2, 3)], "order-x-reserve")
    assert result.outcome is ReserveOutcome.SHORTAGE and result.shortages == shortages

    _stub_answers(stub, (409, {"type": f"{PUBLIC}/problems/reservation-exists",
                               "title": "Insufficient stock", "status": 409,
                               "shortages": shortages}),
                  (200, {"order_id": order, "status": "held", "items": []}))
    result = _catalog(stub).reserve(order, [(2, 3)], "order-x-reserve")
    assert result.outcome is ReserveOutcome.HELD
    assert stub.seen[-1].path == f"/v1/reservations/{order}"


def test_slug_of_ignores_the_title() -> None:
    assert slug_of({"type": "https://x.example/problems/empty-cart",
                    "title": "Insufficient stock"}) == "empty-cart"


def test_http_problem_kind_reads_the_type_of_error_answers_only() -> None:
    typed = {"type": f"{PUBLIC}/problems/request-in-progress", "title": "Conflict"}
    assert problem_kind(httpx.Response(409, json=typed)) == "request-in-progress"
    assert problem_kind(httpx.Response(200, json=typed)) is None
    assert problem_kind(httpx.Response(409, json={"title": "Request in progress"})) is None
    assert problem_kind(httpx.Response(502, content=b"<html>bad gateway</html>")) is None
