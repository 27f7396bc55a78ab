"""JWT access tokens in the RFC 9068 profile, signed with the newest key of the key ring."""

from __future__ import annotations

import uuid
from typing import Any

from authlib.common.security import generate_token
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import g, has_request_context

from auth import scopes
from auth.keys import ALGORITHM, KeyRing
from auth.settings import Settings
from auth.store import new_id

REFRESH_TOKEN_LENGTH = 48
GRANT_CLAIM = "sid"  # the grant (refresh-token family) a user's access token belongs to
_TOKEN_REQUEST = "charter_token_request"


def remember_token_request(request: Any) -> None:
    """Keep the token endpoint's OAuth2 request for :func:`grant_id` (this request only)."""
    if has_request_context():
        setattr(g, _TOKEN_REQUEST, request)


def grant_id() -> str:
    """The grant of the token being issued: the refresh-token family the request continues
    (refresh grant) or a new one, remembered on the request so that ``save_token`` files
    the refresh token under the same id. Revoking the family (``auth.store.revoke_grant``)
    then revokes the access tokens too."""
    request = g.get(_TOKEN_REQUEST) if has_request_context() else None
    family = getattr(request, "refresh_family", None)
    if not family:
        family = new_id()
        if request is not None:
            request.refresh_family = family
    return str(family)


def _refresh_token(**_kwargs: Any) -> str:
    return generate_token(REFRESH_TOKEN_LENGTH)


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """``typ: at+jwt`` tokens with iss, aud, sub, exp, iat, jti, client_id, scope (+ role,
    email and ``sid`` — the grant id — for user tokens); opaque refresh tokens."""

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        ttl = settings.access_token_ttl
        super().__init__(
            issuer=settings.issuer,
            alg=ALGORITHM,
            refresh_token_generator=_refresh_token,
            expires_generator=lambda _client, _grant_type: ttl,
        )
        self.settings = settings
        self.keys = keys

    def get_jwks(self) -> Any:
        return self.keys.signing_keyset()

    def get_audiences(self, client: Any, user: Any, scope: str) -> str:
        return self.settings.audience

    def get_jti(self, client: Any, grant_type: str, user: Any, scope: str) -> str:
        return uuid.uuid4().hex

    def get_extra_claims(self, client: Any, grant_type: str, user: Any, scope: str) -> dict:
        if user is None:
            # A platform service's own client (derived from the dependency manifest,
            # scopes limited to its declared calls) gets the "service" role; other
            # clients act only as themselves.
            if scopes.is_service_client(client.get_client_id()):
                return {"role": scopes.SERVICE_ROLE}
            return {}
        return {"role": user.role, "email": user.email, GRANT_CLAIM: grant_id()}
