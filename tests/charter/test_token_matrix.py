"""The shared token-matrix runner (tests/support/token_matrix.py) on a real Connexion app,
and proof that it fails when an app leaks the reason, accepts a bad token or answers a
403 other than the shared ``scope_problem`` (Connexion's own, echoing the token's scopes
without a challenge, included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from charter.db import Database
from charter.security.tokens import scope_problem, token_problem
from charter.service import create_app
from charter.testing import SpecOperation, TokenFactory
from tests.support.token_matrix import MatrixCase, TokenMatrix, each_operation

SPECS = Path(__file__).parent / "specs"
PROBE_SCOPES = ("catalog:read", "catalog:write")


@pytest.fixture
def client(tmp_path: Path, tokens: TokenFactory) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'probe.db'}")
    app = create_app("probe", api_module="tests.charter.probe_api", db=db,
                     verifier=tokens.verifier(), spec_dir=SPECS)
    with app.test_client() as test_client:
        yield test_client
    db.dispose()


def probe_call(client: Any, op: SpecOperation) -> Any:
    url = "/v1" + op.path.replace("{thing_id}", "7")
    body = {"name": "x"} if op.method == "POST" else None

    def call(headers: dict[str, str]) -> Any:
        return client.request(op.method, url, headers=headers, json=body)

    return call


@each_operation("probe", spec_dir=SPECS)
def test_matrix_passes_on_every_operation_of_a_charter_app(
        client: Any, token_matrix: TokenMatrix, op: SpecOperation) -> None:
    token_matrix.run(op, probe_call(client, op), all_scopes=PROBE_SCOPES)
    ok = probe_call(client, op)(token_matrix.valid_headers(op))
    assert 200 <= ok.status_code < 300, ok.text


def test_matrix_covers_the_extended_bad_tokens(token_matrix: TokenMatrix) -> None:
    op = SpecOperation("get_thing", "GET", "/things/{thing_id}", frozenset({"catalog:read"}))
    rows = {row.name: row for row in token_matrix.cases(op, all_scopes=PROBE_SCOPES)}
    for name in ("no_token", "alg_none", "hs256_with_public_key", "unknown_kid",
                 "missing_sub", "missing_jti", "not_yet_valid", "other_audience_same_issuer"):
        assert rows[name].status == 401, name
    assert rows["expired"].reason == "expired" and rows["alg_none"].reason == "invalid"
    assert {n for n, r in rows.items() if r.status == 403} == {
        "no_scope", "unrelated_scope", "other_scopes"}
    assert rows["no_scope"].expected == scope_problem({"catalog:read"})


def test_connexion_scope_refusal_is_the_shared_problem(
        client: Any, tokens: TokenFactory) -> None:
    """The service-side 403 is exactly the gateway's: RFC 6750 §3.1 challenge with the
    required scope, and nothing of the token's own scopes."""
    token = tokens.token(scope="orders:write secret:scope")
    r = client.get("/v1/things/7", headers={"Authorization": f"Bearer {token}"})
    expected = scope_problem({"catalog:read"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json() == expected.body()
    assert r.headers["www-authenticate"] == (
        'Bearer realm="charter", error="insufficient_scope", scope="catalog:read"')
    assert "orders:write" not in r.text and "secret:scope" not in r.text


class FakeResponse:
    """A response as a test client returns it."""

    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status_code, self._body, self.headers = status, body, headers
        self.text = str(body)

    def json(self) -> Any:
        return self._body


def answer(reason: str) -> FakeResponse:
    problem = token_problem(reason)
    return FakeResponse(401, problem.body(), {"content-type": "application/problem+json",
                                              "www-authenticate": problem.challenge})


@pytest.mark.parametrize("leak", ["none", "accepts_alg_none", "echoes_reason", "other_challenge",
                                  "plain_json", "403_bodies_differ", "403_echoes_scopes",
                                  "403_without_challenge"])
def test_matrix_fails_on_a_leaky_app(token_matrix: TokenMatrix, leak: str) -> None:
    op = SpecOperation("get_thing", "GET", "/things/{thing_id}", frozenset({"catalog:read"}))
    rows = iter(token_matrix.cases(op))  # the runner asks in this order (fresh tokens)

    def call(headers: dict[str, str]) -> FakeResponse:
        row: MatrixCase = next(rows)
        assert set(headers) == set(row.headers)
        if row.status == 403:
            forbidden = scope_problem(op.scopes)
            body, headers = forbidden.body(), {"content-type": "application/problem+json",
                                               "www-authenticate": forbidden.challenge}
            if row.name == "no_scope" and leak == "403_bodies_differ":
                body["title"] = "Nope"
            if row.name == "unrelated_scope" and leak == "403_echoes_scopes":
                body["detail"] = ("Provided token does not have the required scopes. "
                                  "Provided: ['unrelated:scope']; Required: ['catalog:read']")
            if row.name == "no_scope" and leak == "403_without_challenge":
                del headers["www-authenticate"]
            return FakeResponse(403, body, headers)
        assert row.reason is not None
        response = answer(row.reason)
        if row.name == "alg_none" and leak == "accepts_alg_none":
            return FakeResponse(200, [], {"content-type": "application/json"})
        if row.name == "wrong_audience" and leak == "echoes_reason":
            response._body = {**response._body, "detail": "InvalidAudienceError"}
        if row.name == "unknown_kid" and leak == "other_challenge":
            response.headers["www-authenticate"] = 'Bearer error="invalid_token", kid="x"'
        if row.name == "no_token" and leak == "plain_json":
            response.headers["content-type"] = "application/json"
        return response

    if leak == "none":  # the control: a well-behaved app passes
        token_matrix.run(op, call)
        return
    with pytest.raises(AssertionError, match="get_thing") as failed:
        token_matrix.run(op, call)
    assert failed.value.args[0].count("\n  ") == 1, failed.value  # exactly the leaking row
