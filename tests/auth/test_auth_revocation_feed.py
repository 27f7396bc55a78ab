"""The revocation feed (GET /oauth/revocations) on SQLite and on PostgreSQL.

Every revocation path (RFC 7009 revocation of an access token, refresh-token reuse revoking
a grant, a disabled user) must show up in the feed, with the ``sid`` claim of access
tokens matching the grant entry; the cursor must not lose entries and expired ones leave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from auth_helpers import (
    ALICE,
    AUDIENCE,
    CLI,
    ISSUER,
    RESOURCE_SERVER,
    basic,
    client_credentials,
    code_flow_tokens,
    refresh,
)
from flask import Flask
from flask.testing import FlaskClient

from auth.accounts import find_by_email
from auth.app import create_flask_app
from auth.seed import seed
from auth.settings import Settings
from auth.store import Revocation, now, now_ms
from auth.web import EXTENSION
from charter.config import AuthSettings
from charter.db import Database
from charter.security.revocation import DenySet, RevocationPoller
from charter.security.tokens import InvalidToken, JWKSCache, TokenVerifier
from tests.support.plugin import assert_problem


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def feed(client: FlaskClient, cursor: str | None = None) -> dict[str, Any]:
    response = client.get("/oauth/revocations" + (f"?after={cursor}" if cursor else ""))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert body["cursor"].isdigit()
    return body


def exercise_feed(app: Flask, client: FlaskClient) -> None:
    """The whole feed contract, run against one database."""
    start = feed(client)
    assert start["entries"] == []

    # RFC 7009 revocation of an access token -> a jti entry until the token's exp.
    token = client_credentials(client).get_json()["access_token"]
    revoked = client.post("/oauth/revoke", data={"token": token}, headers=basic(*CLI))
    assert revoked.status_code == 200
    access = claims_of(token)
    page = feed(client, start["cursor"])
    jti_entries = [e for e in page["entries"] if e["kind"] == "jti"]
    assert jti_entries == [{"kind": "jti", "value": access["jti"], "until": access["exp"],
                            "revoked_at": jti_entries[0]["revoked_at"]}]
    assert abs(jti_entries[0]["revoked_at"] - now()) <= 5

    # User tokens carry the grant id; refresh rotation keeps it; reuse revokes the grant.
    first = code_flow_tokens(client)
    sid = claims_of(first["access_token"])["sid"]
    second = refresh(client, first["refresh_token"]).get_json()
    assert claims_of(second["access_token"])["sid"] == sid
    assert refresh(client, first["refresh_token"]).status_code == 400  # reuse detected
    page2 = feed(client, page["cursor"])
    grants = [e for e in page2["entries"] if e["kind"] == "grant"]
    assert [e["value"] for e in grants] == [sid]
    assert grants[0]["until"] >= claims_of(second["access_token"])["exp"]

    # A disabled user: a subject entry covering every token issued so far.
    server = app.extensions[EXTENSION].server
    with app.extensions[EXTENSION].db.session() as session:
        user = find_by_email(session, ALICE[0])
        assert user is not None
        user_id = user.id
    server.revoke_subject(user_id)
    page3 = feed(client, page2["cursor"])
    subjects = [e for e in page3["entries"] if e["kind"] == "subject"]
    assert [e["value"] for e in subjects] == [user_id]
    assert subjects[0]["revoked_at"] >= claims_of(second["access_token"])["iat"]
    assert refresh(client, second["refresh_token"]).status_code == 400

    # The first poll sees the whole live log; nothing is lost between cursors.
    everything = feed(client)["entries"]
    assert {(e["kind"], e["value"]) for e in everything} == {
        ("jti", access["jti"]), ("grant", sid), ("subject", user_id)}


def test_feed_on_sqlite(app: Flask, client: FlaskClient) -> None:
    exercise_feed(app, client)


def test_feed_on_postgres(postgres_url: str, migrated_db: Callable[[str, str], Database],
                          settings: Settings) -> None:
    db = migrated_db("auth", postgres_url)
    assert db.engine.dialect.name == "postgresql"
    seed(db)
    app = create_flask_app(db, settings)
    app.config["TESTING"] = True
    exercise_feed(app, app.test_client())


def test_late_commits_within_the_overlap_are_still_delivered(app: Flask,
                                                              client: FlaskClient) -> None:
    cursor = feed(client)["cursor"]
    # A row recorded (clock read) before the cursor but committed after the poll.
    with app.extensions[EXTENSION].db.session() as session:
        session.add(Revocation(kind="jti", value="late", until=now() + 600,
                               revoked_at=now(), recorded_ms=int(cursor) - 2_000))
    assert [e["value"] for e in feed(client, cursor)["entries"]] == ["late"]


def test_entries_leave_the_feed_once_no_token_can_match(app: Flask,
                                                        client: FlaskClient) -> None:
    leeway = app.extensions[EXTENSION].settings.leeway
    with app.extensions[EXTENSION].db.session() as session:
        session.add(Revocation(kind="jti", value="dead", until=now() - leeway - 5,
                               revoked_at=now() - 900, recorded_ms=now_ms()))
        session.add(Revocation(kind="jti", value="live", until=now() + 60,
                               revoked_at=now(), recorded_ms=now_ms()))
    assert [e["value"] for e in feed(client)["entries"]] == ["live"]


@pytest.mark.parametrize("cursor", ["abc", "-1", "1" * 40])
def test_bad_cursor_is_a_problem(client: FlaskClient, cursor: str) -> None:
    response = client.get(f"/oauth/revocations?after={cursor}")
    assert_problem(response, 400)


def resource_server_verifier(client: FlaskClient) -> tuple[TokenVerifier, RevocationPoller]:
    """A resource server's verifier (charter.security) fed by auth's JWKS and feed."""
    jwks = JWKSCache(lambda: client.get("/.well-known/jwks.json").get_json())
    jwks.refresh()
    deny = DenySet()
    poller = RevocationPoller(lambda cursor: feed(client, cursor), deny)
    verifier = TokenVerifier(AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=""),
                             jwks, revocations=deny, poller=poller)
    return verifier, poller


def test_revoking_a_refresh_token_revokes_its_grant_everywhere(client: FlaskClient) -> None:
    """RFC 7009 §2.1: revoking a refresh token revokes the grant's access tokens too —
    through the feed, so every resource server refuses them."""
    verifier, poller = resource_server_verifier(client)
    assert poller.poll_once()
    tokens = code_flow_tokens(client)
    assert verifier.verify(tokens["access_token"])["sid"]
    introspect = {"token": tokens["access_token"]}
    assert client.post("/oauth/introspect", data=introspect,
                       headers=basic(*RESOURCE_SERVER)).get_json()["active"] is True

    revoked = client.post("/oauth/revoke", data={"token": tokens["refresh_token"],
                                                 "token_type_hint": "refresh_token",
                                                 "client_id": "swagger-ui"})
    assert revoked.status_code == 200
    assert poller.poll_once()
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(tokens["access_token"])
    assert refused.value.reason == "revoked"
    assert client.post("/oauth/introspect", data=introspect,
                       headers=basic(*RESOURCE_SERVER)).get_json() == {"active": False}
    assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_introspection_honours_grant_and_subject_revocations(app: Flask,
                                                              client: FlaskClient) -> None:
    """An access token of a revoked grant or of a disabled user introspects inactive."""
    server = app.extensions[EXTENSION].server
    first = code_flow_tokens(client)
    other_browser = app.test_client()
    second = code_flow_tokens(other_browser)

    def active(token: str) -> bool:
        answer = client.post("/oauth/introspect", data={"token": token},
                             headers=basic(*RESOURCE_SERVER)).get_json()
        return bool(answer["active"])

    assert active(first["access_token"]) and active(second["access_token"])
    server.revoke_family(claims_of(first["access_token"])["sid"])
    assert not active(first["access_token"])
    assert active(second["access_token"])
    server.revoke_subject(claims_of(second["access_token"])["sub"])
    assert not active(second["access_token"])
