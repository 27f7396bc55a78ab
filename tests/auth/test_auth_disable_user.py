"""Disabling a user account (``auth.accounts.disable_user``, ``charter users disable``).

A disabled user cannot sign in (same answer as a wrong password, after the same Argon2
work), an existing login session of theirs is refused at ``/oauth/authorize``, a code or
refresh token of theirs gets ``invalid_grant``, their access tokens introspect inactive,
and the revocation feed carries a ``subject`` entry that makes every resource server's
``TokenVerifier`` refuse them. Re-enabling lets them sign in again; tokens issued before
they were disabled stay refused.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from auth_helpers import (
    ALICE,
    AUDIENCE,
    ISSUER,
    RESOURCE_SERVER,
    authorize_url,
    basic,
    code_flow_tokens,
    csrf_from,
    exchange_code,
    login,
    obtain_code,
    pkce,
    refresh,
)
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from auth import accounts, passwords
from auth.store import (
    RefreshToken,
    User,
    last_subject_revocation,
    metadata,
    now,
    revocations_since,
)
from auth.views import LOGIN_FAILED
from auth.web import EXTENSION
from charter.config import AuthSettings
from charter.db import Database
from charter.security.revocation import DenySet, RevocationPoller
from charter.security.tokens import InvalidToken, JWKSCache, TokenVerifier
from charterctl import cli
from tests.support.plugin import assert_migrations_match_models

EMAIL, PASSWORD = ALICE


def disable(app: Flask, email: str = EMAIL) -> User:
    context = app.extensions[EXTENSION]
    lifetime = context.settings.access_token_ttl + context.settings.leeway
    with context.db.session() as session:
        return accounts.disable_user(session, email, token_lifetime=lifetime)


def enable(app: Flask, email: str = EMAIL) -> User:
    with app.extensions[EXTENSION].db.session() as session:
        return accounts.enable_user(session, email)


def active(client: FlaskClient, token: str) -> bool:
    answer = client.post("/oauth/introspect", data={"token": token},
                         headers=basic(*RESOURCE_SERVER))
    assert answer.status_code == 200
    return bool(answer.get_json()["active"])


def feed_verifier(client: FlaskClient) -> tuple[TokenVerifier, RevocationPoller]:
    """A resource server's verifier (charter.security) fed by auth's JWKS and feed."""

    def fetch(cursor: str | None) -> dict[str, Any]:
        response = client.get("/oauth/revocations" + (f"?after={cursor}" if cursor else ""))
        assert response.status_code == 200
        document: dict[str, Any] = response.get_json()
        return document

    jwks = JWKSCache(lambda: client.get("/.well-known/jwks.json").get_json())
    jwks.refresh()
    deny = DenySet()
    poller = RevocationPoller(fetch, deny)
    verifier = TokenVerifier(AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=""),
                             jwks, revocations=deny, poller=poller)
    return verifier, poller


def refused_reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    return refused.value.reason


class VerifySpy:
    """The real Argon2 hasher, recording which hashes ``verify`` was asked to check."""

    def __init__(self, hasher: Any) -> None:
        self._hasher = hasher
        self.verified: list[str] = []

    def verify(self, hash_: str, password: str) -> bool:
        self.verified.append(hash_)
        return bool(self._hasher.verify(hash_, password))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hasher, name)


def sub_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def test_disabled_user_gets_the_wrong_password_answer_after_the_same_argon2_work(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    disable(app)
    hashing = passwords.current()
    spy = VerifySpy(hashing.hasher)
    monkeypatch.setattr(hashing, "hasher", spy)
    verified = spy.verified

    right_password = login(client, EMAIL, PASSWORD)
    wrong_password = login(app.test_client(), "staff@example.com", "not-the-password")
    unknown = login(app.test_client(), "nobody@example.com", PASSWORD)

    for page in (right_password, wrong_password, unknown):
        assert page.status_code == 401
        text = page.get_data(as_text=True)
        assert html.escape(LOGIN_FAILED) in text
        assert "disabled" not in text.lower()
    # The disabled account's real hash was verified in full (no shortcut before Argon2).
    with app.extensions[EXTENSION].db.session() as session:
        user = accounts.find_by_email(session, EMAIL)
        assert user is not None and user.is_disabled
        assert verified[0] == user.password_hash
    assert len(verified) == 3
    # Not signed in: the authorization endpoint still sends the browser to the login page.
    verifier_challenge = pkce()[1]
    assert client.get(authorize_url(verifier_challenge)).headers["Location"].startswith(
        "/login?next=")


def test_a_session_of_a_disabled_user_is_refused_at_authorize(app: Flask,
                                                                client: FlaskClient) -> None:
    url = authorize_url(pkce()[1])
    assert login(client, EMAIL, PASSWORD, next_url=url).status_code == 302
    consent = client.get(url)
    assert consent.status_code == 200  # signed in, the consent page is shown
    csrf = csrf_from(consent.get_data(as_text=True))

    disable(app)

    decision = client.post(url, data={"csrf_token": csrf, "decision": "allow"})
    assert decision.status_code == 302
    assert decision.headers["Location"].startswith("/login?next=")
    assert "code=" not in decision.headers["Location"]
    again = client.get(url)
    assert again.status_code == 302 and again.headers["Location"].startswith("/login?next=")


def test_a_code_issued_before_the_user_was_disabled_is_invalid_grant(
        app: Flask, client: FlaskClient) -> None:
    verifier, challenge = pkce()
    code = obtain_code(client, challenge)
    disable(app)
    response = exchange_code(client, code, verifier)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_refresh_tokens_of_a_disabled_user_are_invalid_grant(app: Flask,
                                                             client: FlaskClient) -> None:
    tokens = code_flow_tokens(client)
    disable(app)
    response = refresh(client, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_the_refresh_grant_checks_the_account_itself(app: Flask,
                                                     client: FlaskClient) -> None:
    """Second lock: a disabled account whose refresh token was not revoked (a row edited
    by hand, a revocation lost) still gets no token."""
    tokens = code_flow_tokens(client)
    with app.extensions[EXTENSION].db.session() as session:
        session.execute(update(User).where(User.email == EMAIL).values(disabled_at=now()))
        assert session.query(RefreshToken).filter(RefreshToken.revoked_at.is_(None)).count()
    response = refresh(client, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_disabling_revokes_the_users_tokens_everywhere(app: Flask,
                                                       client: FlaskClient) -> None:
    verifier, poller = feed_verifier(client)
    assert poller.poll_once()
    tokens = code_flow_tokens(client)
    other = code_flow_tokens(app.test_client())  # a second grant of the same user
    assert verifier.verify(tokens["access_token"])["sub"] == sub_of(tokens["access_token"])
    assert active(client, tokens["access_token"])
    cursor = poller.cursor

    user = disable(app)

    # The feed carries one subject entry for the user, after the verifier's cursor.
    page = client.get(f"/oauth/revocations?after={cursor}").get_json()
    subjects = [e for e in page["entries"] if e["kind"] == "subject"]
    assert user.id == sub_of(tokens["access_token"])
    assert [e["value"] for e in subjects] == [user.id]
    assert subjects[0]["until"] >= jwt.decode(tokens["access_token"],
                                              options={"verify_signature": False})["exp"]
    assert poller.poll_once()
    for token in (tokens["access_token"], other["access_token"]):
        assert refused_reason(verifier, token) == "revoked"
        assert not active(client, token)


def test_enabling_again_lets_the_user_in_but_old_tokens_stay_refused(
        app: Flask, client: FlaskClient) -> None:
    verifier, poller = feed_verifier(client)
    old = code_flow_tokens(client)
    disable(app)
    assert login(app.test_client(), EMAIL, PASSWORD).status_code == 401

    enabled = enable(app)
    assert not enabled.is_disabled

    assert login(app.test_client(), EMAIL, PASSWORD).status_code == 302
    browser = app.test_client()
    new = code_flow_tokens(browser)  # signs in again through the code flow
    assert poller.poll_once()
    assert verifier.verify(new["access_token"])["sub"] == enabled.id
    assert active(client, new["access_token"])
    assert refresh(browser, new["refresh_token"]).status_code == 200
    # Issued before the account was disabled: refused for good.
    assert refused_reason(verifier, old["access_token"]) == "revoked"
    assert not active(client, old["access_token"])
    assert refresh(client, old["refresh_token"]).status_code == 400


def test_enable_waits_out_the_second_of_the_revocation(app: Flask) -> None:
    """A subject revocation refuses tokens issued in its own second: enabling returns only
    after that second, so the next token issued is not refused by mistake."""
    user = disable(app)
    waited: list[float] = []
    with app.extensions[EXTENSION].db.session() as session:
        revoked_at = last_subject_revocation(session, user.id)
        assert revoked_at is not None and revoked_at >= int(user.disabled_at or 0)
        accounts.enable_user(session, EMAIL, sleep=waited.append,
                             clock=lambda: revoked_at + 0.25)
        assert waited == [0.75]
    disable(app)  # again: a second subject revocation
    with app.extensions[EXTENSION].db.session() as session:
        latest = last_subject_revocation(session, user.id)
        assert latest is not None
        accounts.enable_user(session, EMAIL, sleep=waited.append, clock=lambda: latest + 1.0)
        assert accounts.enable_user(session, EMAIL, sleep=waited.append).disabled_at is None
    assert waited == [0.75]  # past the second, or already enabled: no wait


def test_disable_and_enable_are_idempotent_and_unknown_emails_raise(app: Flask) -> None:
    first = disable(app)
    second = disable(app)
    assert second.disabled_at == first.disabled_at
    with app.extensions[EXTENSION].db.session() as session:
        entries = revocations_since(session, -1, now())
        assert [(e.kind, e.value) for e in entries] == [("subject", first.id)]
        with pytest.raises(accounts.UnknownAccount):
            accounts.disable_user(session, "nobody@example.com", token_lifetime=60)
        with pytest.raises(accounts.UnknownAccount):
            accounts.enable_user(session, "nobody@example.com")


def test_auth_migrations_match_the_models(any_database_url: str) -> None:
    """Migration 0004 adds ``users.disabled_at`` exactly as the model declares it (and the
    whole history still goes down to base and up again)."""
    tables = assert_migrations_match_models("auth", any_database_url, metadata)
    assert "users" in tables


def test_disable_on_each_database(any_database_url: str,
                                  migrated_db: Callable[[str, str], Database],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    db = migrated_db("auth", any_database_url)
    with db.session() as session:
        user_id = accounts.create_user(session, "erin@example.com", "erin-password-1").id
    with db.session() as session:
        user = accounts.disable_user(session, "ERIN@example.com ", token_lifetime=930)
        assert user.disabled_at is not None
    with db.session() as session:
        entries = revocations_since(session, -1, now())
        assert [(e.kind, e.value) for e in entries] == [("subject", user_id)]
        assert entries[0].until >= entries[0].revoked_at + 930
        assert accounts.authenticate(session, "erin@example.com", "erin-password-1") is None
        accounts.enable_user(session, "erin@example.com", sleep=lambda _s: None)
    with db.session() as session:
        found = accounts.authenticate(session, "erin@example.com", "erin-password-1")
        assert found is not None and found.id == user_id


def test_the_revocation_lasts_as_long_as_the_tokens_even_across_a_second_boundary(
        tmp_path: Path, migrated_db: Callable[[str, str], Database],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each clock reading one second later than the last (a slow machine straddling a
    second boundary): the entry must still last ``token_lifetime`` after ``revoked_at``
    (it was computed from an earlier reading than ``revoked_at``: one second short)."""
    import itertools

    from auth import accounts as accounts_module
    from auth import store as store_module

    monkeypatch.setenv("CHARTER_ENV", "development")
    db = migrated_db("auth", f"sqlite:///{tmp_path / 'auth.db'}")
    with db.session() as session:
        user_id = accounts.create_user(session, "fay@example.com", "fay-password-1").id
    ticks = itertools.count(1_800_000_000)
    monkeypatch.setattr(store_module, "now", lambda: next(ticks))
    monkeypatch.setattr(accounts_module, "now", lambda: next(ticks))
    with db.session() as session:
        accounts.disable_user(session, "fay@example.com", token_lifetime=930)
    with db.session() as session:
        entries = [e for e in revocations_since(session, -1, 0)
                   if e.value == user_id]
    assert len(entries) == 1
    assert entries[0].until >= entries[0].revoked_at + 930


def test_charter_users_disable_and_enable(app: Flask, client: FlaskClient, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.db'}")
    tokens = code_flow_tokens(client)

    assert cli.main(["users", "disable", EMAIL]) == 0
    out = capsys.readouterr().out
    assert EMAIL in out and "disabled" in out
    assert not active(client, tokens["access_token"])
    assert login(app.test_client(), EMAIL, PASSWORD).status_code == 401

    assert cli.main(["users", "disable", EMAIL]) == 0
    assert "already disabled" in capsys.readouterr().out

    assert cli.main(["users", "disable", "nobody@example.com"]) == 1
    captured = capsys.readouterr()
    assert "no account" in captured.err and "nobody@example.com" in captured.err

    assert cli.main(["users", "enable", EMAIL]) == 0
    assert "enabled" in capsys.readouterr().out
    assert login(app.test_client(), EMAIL, PASSWORD).status_code == 302
    assert not active(client, tokens["access_token"])
