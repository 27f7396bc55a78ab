"""The grants Charter supports: authorization code + PKCE (S256 only), client credentials,
refresh token with rotation. There is no implicit and no password grant."""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from sqlalchemy import delete, select, update

from auth import scopes
from auth.store import AuthorizationCode, RefreshToken, User, digest, now

log = logging.getLogger(__name__)

CLIENT_AUTH = ["client_secret_basic", "client_secret_post"]


def _enabled_user(server: Any, user_id: str) -> User | None:
    """The user ``user_id`` unless the account is gone or disabled."""
    with server.db.session() as session:
        user = session.get(User, user_id)
    if user is None or user.is_disabled:
        return None
    return user


class S256CodeChallenge(CodeChallenge):
    """PKCE, required on every authorization request, with the S256 method only."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """Codes are single use, short-lived and stored as digests."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*CLIENT_AUTH, "none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        user = request.user
        granted = scopes.grant_for_user(request.payload.scope, request.client.scope, user.role)
        data = request.payload.data
        with self.server.db.session() as session:
            session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < now()))
            session.add(
                AuthorizationCode(
                    code_hash=digest(code),
                    client_id=request.client.client_id,
                    user_id=user.id,
                    redirect_uri=request.payload.redirect_uri,
                    scope=granted,
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    issued_at=now(),
                    expires_at=now() + self.server.settings.code_ttl,
                )
            )

    def validate_authorization_redirect_uri(self, request: Any, client: Any) -> str:
        """``redirect_uri`` may be left out only when the client registered exactly one;
        otherwise the request is refused on a page, never redirected (RFC 6749 §3.1.2.3)."""
        if not request.payload.redirect_uri and len(client.redirect_uris) != 1:
            raise InvalidRequestError(
                "'redirect_uri' is required: the client has several registered."
            )
        uri: str = super().validate_authorization_redirect_uri(request, client)
        return uri

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        with self.server.db.session() as session:
            item = session.get(AuthorizationCode, digest(code))
        if item is None or item.client_id != client.client_id or item.is_expired():
            return None
        if item.used_at is not None:
            log.warning("authorization code replayed; revoking the tokens it issued")
            self._revoke_issued(item)
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Mark the code used and remember what it issued; a concurrent redemption loses,
        and then both exchanges' tokens are revoked."""
        issued = getattr(self.request, "issued_access", None) or (None, None)
        family = getattr(self.request, "refresh_family", None)
        with self.server.db.session() as session:
            result = session.execute(
                update(AuthorizationCode)
                .where(
                    AuthorizationCode.code_hash == authorization_code.code_hash,
                    AuthorizationCode.used_at.is_(None),
                )
                .values(used_at=now(), refresh_family_id=family, access_jti=issued[0],
                        access_expires_at=issued[1])
            )
            winner = session.get(AuthorizationCode, authorization_code.code_hash)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self.server.revoke_family(family)
            if issued[0] is not None:
                self.server.revoke_jti(issued[0], int(issued[1] or 0))
            if winner is not None:
                self._revoke_issued(winner)
            raise InvalidGrantError("The authorization code was already used.")

    def _revoke_issued(self, item: AuthorizationCode) -> None:
        self.server.revoke_family(item.refresh_family_id)
        if item.access_jti:
            self.server.revoke_jti(item.access_jti, int(item.access_expires_at or 0))

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        """The code's user; none (``invalid_grant``) when the account is gone or disabled."""
        return _enabled_user(self.server, authorization_code.user_id)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """A platform service's client asking for more than its derived scopes gets
    ``invalid_scope`` (other clients' requests are narrowed to what they may hold)."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client = self.request.client
        if not scopes.is_service_client(client.get_client_id()):
            return
        allowed = set(scopes.split(client.scope))
        beyond = [s for s in scopes.split(self.request.payload.scope) if s not in allowed]
        if beyond:
            raise InvalidScopeError(
                f"service client {client.get_client_id()} may not request {' '.join(beyond)}: "
                "its scopes are derived from governance/dependencies.yaml")


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Every use returns a new refresh token and revokes the presented one. Presenting a
    revoked refresh token again (replay) revokes the whole token family."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*CLIENT_AUTH, "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        with self.server.db.session() as session:
            item = session.scalars(
                select(RefreshToken).where(RefreshToken.token_hash == digest(refresh_token))
            ).first()
            if item is None:
                return None
        if item.is_revoked():
            log.warning("refresh token replayed; revoking its family")
            self.server.revoke_family(item.family_id)
            return None
        if item.is_expired():
            return None
        self.request.refresh_family = item.family_id
        return item

    def authenticate_user(self, refresh_token: RefreshToken) -> User | None:
        """The token's user; ``invalid_grant`` when the account is gone or disabled (its
        refresh tokens are revoked when it is disabled; this is the second lock)."""
        user = _enabled_user(self.server, refresh_token.user_id)
        if user is None:
            raise InvalidGrantError("The refresh token is no longer valid.")
        return user

    def issue_token(self, user: User, refresh_token: RefreshToken) -> dict:
        # The role may have changed since the grant: never widen beyond it.
        requested = self.request.payload.scope or refresh_token.get_scope()
        scope = scopes.join(set(scopes.split(requested)) & scopes.scopes_for_role(user.role))
        return self.generate_token(user=user, scope=scope, include_refresh_token=True)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        with self.server.db.session() as session:
            result = session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == refresh_token.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self.server.revoke_family(refresh_token.family_id)
            raise InvalidGrantError("The refresh token was already used.")
