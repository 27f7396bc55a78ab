"""JWT access tokens in the RFC 9068 profile, signed with the newest key of the key ring."""

from __future__ import annotations

import uuid
from typing import Any

from authlib.common.security import generate_token
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator

from auth.keys import ALGORITHM, KeyRing
from auth.settings import Settings

REFRESH_TOKEN_LENGTH = 48


def _refresh_token(**_kwargs: Any) -> str:
    return generate_token(REFRESH_TOKEN_LENGTH)


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """``typ: at+jwt`` tokens with iss, aud, sub, exp, iat, jti, client_id, scope (+ role,
    email for user tokens); opaque refresh tokens."""

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
            # Platform services acting for themselves (client credentials) get the
            # "service" role; other clients act only as themselves.
            if client.get_client_id() in self.settings.service_clients:
                return {"role": "service"}
            return {}
        return {"role": user.role, "email": user.email}
