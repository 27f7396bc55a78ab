"""The charter app factory: security, problem+json, correlation ids, metrics, health."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from connexion.middleware import MiddlewarePosition

from charter import problems
from charter.db import Database
from charter.service import create_app
from charter.testing import TokenFactory

SPECS = Path(__file__).parent / "specs"


@pytest.fixture
def client(tmp_path: Path, tokens: TokenFactory):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'probe.db'}")
    app = create_app("probe", api_module="tests.charter.probe_api", db=db,
                     verifier=tokens.verifier(), spec_dir=SPECS)
    return app.test_client()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_reaches_handler_with_subject(client, tokens) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/things/7", headers=auth(tokens.token(sub="alice", scope="catalog:read")))
    assert r.status_code == 200
    assert r.json() == {"id": 7, "name": "probe", "owner": "alice"}


def test_missing_token_is_401_problem(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/things/7")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401


@pytest.mark.parametrize("kind", sorted(TokenFactory().bad_tokens("catalog:read")))
def test_bad_tokens_are_401(client, tokens, kind: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/things/7", headers=auth(tokens.bad_tokens("catalog:read")[kind]))
    assert r.status_code == 401, kind
    assert r.headers["content-type"].startswith("application/problem+json")


def test_missing_scope_is_403(client, tokens) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/things/7", headers=auth(tokens.token(scope="cart:read")))
    assert r.status_code == 403
    assert r.json()["title"] == "Forbidden"


def test_domain_problems_become_problem_json(client, tokens) -> None:  # type: ignore[no-untyped-def]
    h = auth(tokens.token(scope="catalog:read"))
    r = client.get("/v1/things/404", headers=h)
    assert r.status_code == 404
    assert r.json() == {"type": problems.type_uri("not-found"), "title": "Not Found",
                        "status": 404,
                        "detail": "thing 404 does not exist"}
    assert client.get("/v1/things/409", headers=h).status_code == 409


def test_unexpected_error_is_500_without_details(client, tokens, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR):
        r = client.get("/v1/things/500", headers=auth(tokens.token(scope="catalog:read")))
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert any("unhandled error" in rec.getMessage() for rec in caplog.records)


def test_unknown_path_is_404_problem(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_validation_errors_are_400_problem(client, tokens) -> None:  # type: ignore[no-untyped-def]
    h = auth(tokens.token(scope="catalog:write"))
    for body in ({"name": "x", "extra": 1}, {"name": 5}, {}, {"name": "x" * 21}):
        r = client.post("/v1/things", json=body, headers=h)
        assert r.status_code == 400, body
        assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post("/v1/things", content=b"{not json", headers={**h, "content-type":
                                                                 "application/json"})
    assert r.status_code == 400


def test_correlation_id_is_echoed_or_generated(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/health/live", headers={"X-Correlation-Id": "abc-123"})
    assert r.headers["x-correlation-id"] == "abc-123"
    generated = client.get("/health/live").headers["x-correlation-id"]
    assert len(generated) == 32
    hostile = client.get("/health/live", headers={"X-Correlation-Id": "a b\tc"})
    assert hostile.headers["x-correlation-id"] != "a b\tc"


def test_metrics_count_middleware_answers(client, tokens) -> None:  # type: ignore[no-untyped-def]
    client.get("/v1/things/7")
    client.get("/v1/things/7", headers=auth(tokens.token(scope="catalog:read")))
    text = client.get("/metrics").text
    assert ('charter_http_requests_total{method="GET",operation="tests.charter.probe_api.get_thing"'
            ',service="probe",status="401"} 1.0') in text
    assert 'status="200"} 1.0' in text


def test_readiness_names_the_failed_dependency_not_the_error(
        tmp_path: Path, tokens: TokenFactory, caplog: pytest.LogCaptureFixture) -> None:
    db = Database(f"sqlite:///{tmp_path / 'ok.db'}")

    def broker_down() -> None:
        raise ConnectionError("amqp://guest:hunter2@broker refused")

    app = create_app("probe", api_module="tests.charter.probe_api", db=db,
                     verifier=tokens.verifier(), spec_dir=SPECS, checks={"broker": broker_down})
    c = app.test_client()
    assert c.get("/health/live").status_code == 200
    with caplog.at_level(logging.WARNING):
        r = c.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"] == {"database": "ok", "broker": "failed"}
    assert "ConnectionError" not in r.text and "hunter2" not in r.text
    logged = [rec.getMessage() for rec in caplog.records]
    assert any("broker" in m and "ConnectionError" in m for m in logged), logged


def test_swagger_ui_is_configured_for_pkce(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/ui/")
    assert r.status_code == 200
    assert "usePkceWithAuthorizationCodeGrant" in r.text
    assert client.get("/v1/ui/oauth2-redirect.html").status_code == 200
    spec = client.get("/v1/openapi.json").json()
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["authorizationCode"]["authorizationUrl"].endswith("/oauth/authorize")


class _Boom:
    """A middleware that fails before the handler: ``/v1/things/<n>`` with n = 501 raises
    an unexpected error, n = 503 a server-side problem with an internal detail."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/things/501"):
            raise RuntimeError("pool of postgresql://admin:hunter2@db exhausted")
        if scope["type"] == "http" and scope["path"].endswith("/things/503"):
            raise problems.UpstreamUnavailable("auth at 10.0.0.7: ConnectError hunter2",
                                               headers={"Retry-After": "5"})
        await self.app(scope, receive, send)


@pytest.fixture
def boom_client(tmp_path: Path, tokens: TokenFactory):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'boom.db'}")
    app = create_app("probe", api_module="tests.charter.probe_api", db=db,
                     verifier=tokens.verifier(), spec_dir=SPECS)
    app.add_middleware(_Boom, position=MiddlewarePosition.BEFORE_SECURITY)
    return app.test_client()


def test_connexion_level_500_carries_the_correlation_id(boom_client, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR):
        r = boom_client.get("/v1/things/501", headers={"X-Correlation-Id": "cid-501"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["correlation_id"] == "cid-501"
    assert body["detail"] == problems.GENERIC_5XX_DETAIL
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert any("hunter2" in rec.getMessage() or "hunter2" in str(rec.exc_info)
               for rec in caplog.records)


def test_connexion_level_5xx_problem_keeps_its_detail_in_the_log(boom_client, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING):
        r = boom_client.get("/v1/things/503", headers={"X-Correlation-Id": "cid-503"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    body = r.json()
    assert body == {"type": problems.type_uri("upstream-unavailable"),
                    "title": "Service Unavailable", "status": 503,
                    "detail": problems.GENERIC_5XX_DETAIL, "correlation_id": "cid-503"}
    assert any("ConnectError" in rec.getMessage() for rec in caplog.records)
