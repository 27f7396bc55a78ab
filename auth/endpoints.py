"""RFC 7662 introspection and RFC 7009 revocation for JWT access tokens and refresh tokens.

Each is a chain of two Authlib endpoints: the JWT one handles tokens that verify with our
keys, the refresh-token one everything else. A revoked access token's ``jti`` goes on a
deny-list until the token would have expired; introspection then answers inactive.
"""

from __future__ import annotations

from typing import Any

from authlib.common.errors import ContinueIteration
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTIntrospectionEndpoint
from authlib.oauth2.rfc9068.token_validator import JWTBearerTokenValidator
from sqlalchemy import select, update

from auth.store import RefreshToken, User, digest, now

CONFIDENTIAL = ["client_secret_basic", "client_secret_post"]
ANY_CLIENT = [*CONFIDENTIAL, "none"]


def _refresh_token(server: Any, token_string: str) -> RefreshToken | None:
    with server.db.session() as session:
        return session.scalars(
            select(RefreshToken).where(RefreshToken.token_hash == digest(token_string))
        ).first()


class AccessTokenIntrospection(JWTIntrospectionEndpoint):
    """Introspects our JWT access tokens (confidential clients only)."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL

    def get_jwks(self) -> Any:
        return self.server.keys.verification_keyset()

    def check_permission(self, token: Any, client: Any, request: Any) -> bool:
        return True  # any authenticated confidential client (resource servers)

    def get_username(self, user_id: str) -> str | None:
        with self.server.db.session() as session:
            user = session.get(User, user_id)
            return user.email if user else None

    def create_introspection_payload(self, token: Any) -> dict:
        payload = super().create_introspection_payload(token)
        if not payload.get("active"):
            return payload
        if self.server.is_jti_revoked(token["jti"]):
            return {"active": False}
        payload["jti"] = token["jti"]
        for claim in ("role", "email"):
            if claim in token:
                payload[claim] = token[claim]
        return payload


class RefreshTokenIntrospection(IntrospectionEndpoint):
    """Introspects refresh tokens, for the client they were issued to."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _refresh_token(self.server, token_string)

    def check_permission(self, token: RefreshToken, client: Any, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: RefreshToken) -> dict:
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": token.client_id,
            "scope": token.scope,
            "sub": token.user_id,
            "iss": self.server.settings.issuer,
            "exp": token.expires_at,
            "iat": token.issued_at,
        }


class AccessTokenRevocation(RevocationEndpoint):
    """Revokes a JWT access token by deny-listing its ``jti`` until it expires."""

    CLIENT_AUTH_METHODS = ANY_CLIENT

    def authenticate_token(self, request: Any, client: Any) -> Any:
        self.check_params(request, client)
        if request.form.get("token_type_hint") not in ("access_token", None):
            raise ContinueIteration()
        validator = JWTBearerTokenValidator(
            issuer=self.server.settings.issuer, resource_server=None
        )
        validator.get_jwks = self.server.keys.verification_keyset  # type: ignore[method-assign]
        try:
            claims = validator.authenticate_token(request.form["token"])
        except InvalidTokenError as exc:
            raise ContinueIteration() from exc
        if claims.get("client_id") != client.get_client_id():
            raise InvalidGrantError("The token was not issued to this client.")
        return claims

    def revoke_token(self, token: Any, request: Any) -> None:
        self.server.revoke_jti(str(token["jti"]), int(token["exp"]))


class RefreshTokenRevocation(RevocationEndpoint):
    """Revokes a refresh token (marks it revoked; a later use is treated as replay)."""

    CLIENT_AUTH_METHODS = ANY_CLIENT

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _refresh_token(self.server, token_string)

    def revoke_token(self, token: RefreshToken, request: Any) -> None:
        with self.server.db.session() as session:
            session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == token.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now())
            )

