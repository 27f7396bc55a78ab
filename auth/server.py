"""The Authlib authorization server wired to Charter's database, keys and settings."""

from __future__ import annotations

import logging
from typing import Any

import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from flask import Flask

from auth import endpoints, grants, store
from auth.keys import ALGORITHM, KeyRing
from auth.scopes import ALL_SCOPES
from auth.settings import Settings
from auth.store import Client, RefreshToken, digest, new_id, now
from auth.tokens import AccessTokenGenerator, remember_token_request
from charter.db import Database

log = logging.getLogger(__name__)

GRANT_TYPES = ["authorization_code", "client_credentials", "refresh_token"]


class CharterAuthorizationServer(AuthorizationServer):
    """Authorization server whose grants and endpoints reach ``db``, ``settings``, ``keys``."""

    def __init__(self, app: Flask, db: Database, settings: Settings, keys: KeyRing) -> None:
        self.db = db
        self.settings = settings
        self.keys = keys
        super().__init__()
        self.init_app(app)
        self.scopes_supported = list(ALL_SCOPES)
        self.register_token_generator("default", AccessTokenGenerator(settings, keys))

    def query_client(self, client_id: str) -> Client | None:
        with self.db.session() as session:
            return session.get(Client, client_id)

    def save_token(self, token: dict, request: Any) -> None:
        """Access tokens are self-contained JWTs; only refresh tokens are stored (hashed)."""
        request.issued_access = _jti_and_expiry(token.get("access_token"))
        refresh = token.get("refresh_token")
        if not refresh or request.user is None:
            return
        family = getattr(request, "refresh_family", None) or new_id()
        request.refresh_family = family
        with self.db.session() as session:
            session.add(
                RefreshToken(
                    token_hash=digest(refresh),
                    family_id=family,
                    client_id=request.client.client_id,
                    user_id=request.user.id,
                    scope=token.get("scope") or "",
                    issued_at=now(),
                    expires_at=now() + self.settings.refresh_token_ttl,
                )
            )

    def get_token_grant(self, request: Any) -> Any:
        """Authlib's grant lookup; also lets the token generator see this request (for the
        access token's ``sid`` = the grant's refresh-token family)."""
        grant = super().get_token_grant(request)
        remember_token_request(request)
        return grant

    def revoke_family(self, family_id: str | None) -> None:
        """Revoke a grant: its refresh tokens and (through the revocation feed) every
        access token carrying ``sid == family_id``."""
        if not family_id:
            return
        until = now() + self.settings.access_token_ttl + self.settings.leeway
        with self.db.session() as session:
            store.revoke_grant(session, family_id, until)

    def revoke_subject(self, user_id: str) -> None:
        """Revoke every token a user holds (call it when an account is disabled/erased)."""
        at = now()
        until = at + self.settings.access_token_ttl + self.settings.leeway
        with self.db.session() as session:
            store.revoke_subject(session, user_id, until, revoked_at=at)

    def revoke_jti(self, jti: str, expires_at: int) -> None:
        """Deny-list an access token until it expires (introspection and the feed)."""
        with self.db.session() as session:
            store.revoke_access_token(session, jti, expires_at)

    def is_access_token_revoked(self, claims: Any) -> bool:
        """True when the token, its grant (``sid``) or its user (``sub``) is revoked."""
        with self.db.session() as session:
            return store.access_token_revoked(session, claims) is not None


def _jti_and_expiry(access_token: str | None) -> tuple[str | None, int | None]:
    """``jti`` and ``exp`` of a JWT access token this server has just signed."""
    if not access_token:
        return None, None
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return str(claims["jti"]), int(claims["exp"])


def create_server(app: Flask, db: Database, settings: Settings) -> CharterAuthorizationServer:
    """The authorization server with Charter's grants and endpoints registered."""
    retention = settings.access_token_ttl + settings.leeway + 60
    server = CharterAuthorizationServer(app, db, settings, KeyRing(db, retention))
    server.register_grant(grants.AuthorizationCodeGrant, [grants.S256CodeChallenge(required=True)])
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_grant(grants.RefreshTokenGrant)
    server.register_endpoint(endpoints.TokenIntrospection)
    server.register_endpoint(endpoints.TokenRevocation)
    return server


def server_metadata(settings: Settings) -> AuthorizationServerMetadata:
    """RFC 8414 metadata, validated (a non-https, non-loopback issuer only warns)."""
    metadata = AuthorizationServerMetadata(
        {
            "issuer": settings.issuer,
            "authorization_endpoint": settings.url("/oauth/authorize"),
            "token_endpoint": settings.url("/oauth/token"),
            "jwks_uri": settings.url("/.well-known/jwks.json"),
            "introspection_endpoint": settings.url("/oauth/introspect"),
            "revocation_endpoint": settings.url("/oauth/revoke"),
            "scopes_supported": list(ALL_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": GRANT_TYPES,
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "revocation_endpoint_auth_methods_supported": endpoints.ANY_CLIENT,
            "introspection_endpoint_auth_methods_supported": endpoints.CONFIDENTIAL,
            "code_challenge_methods_supported": ["S256"],
        }
    )
    try:
        metadata.validate()
    except ValueError as exc:
        log.warning("authorization server metadata: %s", exc)
    metadata["access_token_signing_alg_values_supported"] = [ALGORITHM]
    return metadata
