"""RFC 7662 introspection and RFC 7009 revocation for JWT access tokens and refresh tokens.

One endpoint each looks the presented token up as both kinds. ``token_type_hint`` only
orders that search (RFC 7662 §2.1, RFC 7009 §2.1: a server that cannot find the token
with the hint MUST extend its search to every type it supports). A revoked access token's
``jti`` goes on a deny-list until the token would have expired; a revoked refresh token
revokes its whole grant (RFC 7009 §2.1), access tokens included, through the store's
``revoke_*`` functions and so the revocation feed. Introspection answers inactive for an
access token refused by any of them (its ``jti``, its grant ``sid``, its user ``sub``)
and for any access token of a disabled account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068.claims import JWTAccessTokenClaims
from authlib.oauth2.rfc9068.token_validator import JWTBearerTokenValidator
from joserfc.errors import JoseError
from sqlalchemy import select

from auth.store import RefreshToken, User, digest

CONFIDENTIAL = ["client_secret_basic", "client_secret_post"]
ANY_CLIENT = [*CONFIDENTIAL, "none"]
TOKEN_TYPES = ("access_token", "refresh_token")

Token: TypeAlias = JWTAccessTokenClaims | RefreshToken


class UnsupportedTokenType(UnsupportedTokenTypeError):
    """RFC 7009 §2.2.1 / RFC 6749 §5.2: a 400 error (Authlib's is a 401)."""

    status_code = 400


def _check_params(request: Any) -> None:
    if "token" not in request.form:
        raise InvalidRequestError("Missing 'token'.")
    hint = request.form.get("token_type_hint")
    if hint and hint not in TOKEN_TYPES:
        raise UnsupportedTokenType(f"Unknown 'token_type_hint': {hint!r}.")


def _refresh_token(server: Any, token_string: str) -> RefreshToken | None:
    with server.db.session() as session:
        return session.scalars(
            select(RefreshToken).where(RefreshToken.token_hash == digest(token_string))
        ).first()


def _access_token(server: Any, token_string: str) -> JWTAccessTokenClaims | None:
    """The claims of a JWT access token signed by one of our keys (expired or not)."""
    validator = JWTBearerTokenValidator(issuer=server.settings.issuer, resource_server=None)
    validator.get_jwks = server.keys.verification_keyset  # type: ignore[method-assign]
    try:
        claims: JWTAccessTokenClaims = validator.authenticate_token(token_string)
    except (InvalidTokenError, JoseError, ValueError):
        return None
    return claims if claims.get("iss") == server.settings.issuer else None


def find_token(server: Any, token_string: str, hint: str | None) -> Token | None:
    """Look ``token_string`` up as every token type, the hinted type first."""
    finders: list[Callable[[Any, str], Token | None]] = [_access_token, _refresh_token]
    if hint == "refresh_token":
        finders.reverse()
    for find in finders:
        found = find(server, token_string)
        if found is not None:
            return found
    return None


class TokenIntrospection(IntrospectionEndpoint):
    """Introspects access tokens (for any confidential client: resource servers) and
    refresh tokens (only for the client they were issued to)."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL
    SUPPORTED_TOKEN_TYPES = TOKEN_TYPES

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(self.server, token_string, token_type_hint)

    def check_params(self, request: Any, client: Any) -> None:
        _check_params(request)

    def check_permission(self, token: Token, client: Any, request: Any) -> bool:
        if isinstance(token, RefreshToken):
            return token.check_client(client)
        return True

    def create_introspection_payload(self, token: Token | None) -> dict:
        if token is None:
            return {"active": False}
        if isinstance(token, RefreshToken):
            return super().create_introspection_payload(token)
        return self._access_token_payload(token)

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

    def _access_token_payload(self, claims: JWTAccessTokenClaims) -> dict:
        try:
            claims.validate(leeway=0)
        except JoseError:
            return {"active": False}
        if self.server.is_access_token_revoked(claims):
            return {"active": False}
        user = self._user(str(claims["sub"]))
        if user is not None and user.is_disabled:
            return {"active": False}
        payload = {
            "active": True,
            "token_type": "Bearer",
            "client_id": claims["client_id"],
            "scope": claims.get("scope", ""),
            "sub": claims["sub"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "exp": claims["exp"],
            "iat": claims["iat"],
            "jti": claims["jti"],
        }
        if user is not None:
            payload["username"] = user.email
        for claim in ("role", "email"):
            if claim in claims:
                payload[claim] = claims[claim]
        return payload

    def _user(self, user_id: str) -> User | None:
        with self.server.db.session() as session:
            return session.get(User, user_id)


class TokenRevocation(RevocationEndpoint):
    """Revokes an access token (deny-lists its ``jti`` until it expires) or a refresh token
    with its whole grant (its family and the grant's access tokens, via the feed; a later
    use of the refresh token is treated as replay). A client may revoke only its own
    tokens; an unknown token is answered 200 as RFC 7009 §2.2 says."""

    CLIENT_AUTH_METHODS = ANY_CLIENT
    SUPPORTED_TOKEN_TYPES = TOKEN_TYPES

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(self.server, token_string, token_type_hint)

    def check_params(self, request: Any, client: Any) -> None:
        _check_params(request)

    def authenticate_token(self, request: Any, client: Any) -> Token | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is None:
            return None
        owner = token.client_id if isinstance(token, RefreshToken) else token.get("client_id")
        if owner != client.get_client_id():
            raise InvalidGrantError("The token was not issued to this client.")
        return token

    def revoke_token(self, token: Token, request: Any) -> None:
        if isinstance(token, RefreshToken):
            # RFC 7009 §2.1: revoking a refresh token revokes the grant it belongs to —
            # every refresh token of the family and, through the revocation feed, every
            # access token carrying the grant's ``sid``.
            self.server.revoke_family(token.family_id)
        else:
            self.server.revoke_jti(str(token["jti"]), int(token["exp"]))
