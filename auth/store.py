"""Tables of the authorization server and the Authlib model methods on them.

Times are integer Unix seconds (UTC). Secrets at rest: client secrets, authorization codes
and refresh tokens are stored as SHA-256 digests (they are high-entropy random strings);
user passwords as Argon2id hashes; signing keys as PEM (see ``auth.keys``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from auth import scopes
from charter.messaging.outbox import Outbox, add_outbox_table


class AuthBase(DeclarativeBase):
    """Declarative base of the auth service's own database."""


metadata = AuthBase.metadata

outbox = Outbox(add_outbox_table(metadata))
"""Auth's transactional outbox (``auth.UserRegistered``, see ``auth.events``)."""


def now() -> int:
    """Current Unix time in whole seconds."""
    return int(time.time())


def digest(value: str) -> str:
    """SHA-256 hex digest used to store and look up secrets and opaque tokens."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_id() -> str:
    return str(uuid.uuid4())


class User(AuthBase):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'staff', 'admin')", name="ck_users_role"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="customer")
    created_at: Mapped[int] = mapped_column(Integer, nullable=False, default=now)
    # Set while the account is disabled (``auth.accounts.disable_user``): no sign-in, no
    # authorization, no token from any grant.
    disabled_at: Mapped[int | None] = mapped_column(Integer, nullable=True)

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    def get_user_id(self) -> str:
        return self.id

    def public(self) -> dict[str, str]:
        return {"id": self.id, "email": self.email, "role": self.role}


class Client(AuthBase, ClientMixin):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_name: Mapped[str] = mapped_column(String(120), nullable=False, default="")
    grant_types: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    response_types: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    scope: Mapped[str] = mapped_column(Text, nullable=False, default="")
    token_endpoint_auth_method: Mapped[str] = mapped_column(
        String(32), nullable=False, default="client_secret_basic"
    )
    created_at: Mapped[int] = mapped_column(Integer, nullable=False, default=now)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    def set_secret(self, secret: str | None) -> None:
        self.client_secret_hash = digest(secret) if secret else None

    # --- authlib ClientMixin -------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Requested ∩ allowed; nothing requested means everything the client may have."""
        allowed = set(scopes.split(self.scope))
        wanted = set(scopes.split(scope)) if scope else allowed
        return scopes.join(wanted & allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.client_secret_hash or not client_secret:
            return False
        return secrets.compare_digest(self.client_secret_hash, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return self.token_endpoint_auth_method == method
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class AuthorizationCode(AuthBase, AuthorizationCodeMixin):
    __tablename__ = "oauth_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    redirect_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    scope: Mapped[str] = mapped_column(Text, nullable=False, default="")
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    issued_at: Mapped[int] = mapped_column(Integer, nullable=False, default=now)
    expires_at: Mapped[int] = mapped_column(Integer, nullable=False)
    # Set when the code is redeemed; the row is kept until it expires so that a replay can
    # revoke what the first exchange issued (RFC 6749 §4.1.2).
    used_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refresh_family_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    access_jti: Mapped[str | None] = mapped_column(String(64), nullable=True)
    access_expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= now()


class RefreshToken(AuthBase, TokenMixin):
    """An opaque refresh token; ``family_id`` links every token rotated from one grant."""

    __tablename__ = "oauth_refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    family_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    scope: Mapped[str] = mapped_column(Text, nullable=False, default="")
    issued_at: Mapped[int] = mapped_column(Integer, nullable=False, default=now)
    expires_at: Mapped[int] = mapped_column(Integer, nullable=False)
    revoked_at: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # --- authlib TokenMixin --------------------------------------------------------
    def check_client(self, client: Any) -> bool:
        return bool(self.client_id == client.get_client_id())

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, self.expires_at - now())

    def is_expired(self) -> bool:
        return self.expires_at <= now()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class RevokedAccessToken(AuthBase):
    """Deny-list of revoked JWT access tokens, kept until the token would expire anyway."""

    __tablename__ = "oauth_revoked_jtis"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    revoked_at: Mapped[int] = mapped_column(Integer, nullable=False, default=now)


class Revocation(AuthBase):
    """The revocation log every process polls (``GET /oauth/revocations``, see
    ``auth.revocations``): one row per revoked access token (``jti``), grant (``grant``:
    a refresh-token family, the ``sid`` claim of its access tokens) or user (``subject``:
    tokens issued at or before ``revoked_at``). ``until`` is the latest expiry of a token
    the row can match; ``recorded_ms`` (auth's clock) orders the feed."""

    __tablename__ = "oauth_revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    until: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    revoked_at: Mapped[int] = mapped_column(Integer, nullable=False)
    recorded_ms: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)


REVOCATION_KINDS = ("jti", "grant", "subject")


def now_ms() -> int:
    """Current Unix time in milliseconds (orders the revocation feed)."""
    return int(time.time() * 1000)


def record_revocation(session: Session, kind: str, value: str, until: int,
                      revoked_at: int | None = None) -> None:
    """Append to the revocation log (and drop rows no token can match any more).

    Every revocation goes through here (via the ``revoke_*`` functions below), so the
    feed sees each one. ``revoked_at`` is the instant ``until`` was computed from (default
    now): one clock reading for both, so a second boundary between two readings can never
    make the entry end a second before the last token it covers.
    """
    if kind not in REVOCATION_KINDS:
        raise ValueError(f"unknown revocation kind {kind!r}")
    at = now() if revoked_at is None else revoked_at
    session.execute(delete(Revocation).where(Revocation.until < now() - 3600))
    session.add(Revocation(kind=kind, value=value, until=until, revoked_at=at,
                           recorded_ms=now_ms()))


def revoke_access_token(session: Session, jti: str, expires_at: int) -> None:
    """Deny-list one access token until it expires (introspection and the feed)."""
    session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now()))
    if session.get(RevokedAccessToken, jti) is None:
        session.add(RevokedAccessToken(jti=jti, expires_at=expires_at, revoked_at=now()))
    record_revocation(session, "jti", jti, expires_at)


def revoke_grant(session: Session, family_id: str, until: int) -> None:
    """Revoke a grant: every refresh token of the family, and (through the feed) every
    access token whose ``sid`` is ``family_id`` (``until``: their latest possible exp)."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    record_revocation(session, "grant", family_id, until)


def revoke_subject(session: Session, user_id: str, until: int,
                   revoked_at: int | None = None) -> None:
    """Revoke everything a user holds (disabled or erased account): every refresh token,
    and every access token of ``sub`` issued until ``revoked_at`` (default now; ``until``:
    their latest exp)."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    record_revocation(session, "subject", user_id, until, revoked_at)


def last_subject_revocation(session: Session, user_id: str) -> int | None:
    """``revoked_at`` of the newest ``subject`` revocation of ``user_id`` still logged."""
    latest: int | None = session.scalar(
        select(func.max(Revocation.revoked_at))
        .where(Revocation.kind == "subject", Revocation.value == user_id)
    )
    return latest


def access_token_revoked(session: Session, claims: Any) -> str | None:
    """Which revocation refuses these access-token claims (``jti``, ``grant`` or
    ``subject``, matched as :class:`charter.security.revocation.DenySet` does), or ``None``."""
    jti = str(claims.get("jti", ""))
    if session.get(RevokedAccessToken, jti) is not None:
        return "jti"
    sid = claims.get("sid")
    if sid and session.scalars(
        select(Revocation.id).where(Revocation.kind == "grant", Revocation.value == str(sid))
    ).first() is not None:
        return "grant"
    iat = int(claims.get("iat", 0))
    if session.scalars(
        select(Revocation.id).where(Revocation.kind == "subject",
                                    Revocation.value == str(claims.get("sub", "")),
                                    Revocation.revoked_at >= iat)
    ).first() is not None:
        return "subject"
    return None


def revocations_since(session: Session, after_ms: int, alive_at: int) -> list[Revocation]:
    """Log rows recorded after ``after_ms`` that can still match a token alive at
    ``alive_at``, oldest first."""
    return list(
        session.scalars(
            select(Revocation)
            .where(Revocation.recorded_ms > after_ms, Revocation.until >= alive_at)
            .order_by(Revocation.recorded_ms, Revocation.id)
        )
    )


class SigningKey(AuthBase):
    """A token-signing key pair (private PEM; the public half is derived)."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    private_key_pem: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False, default=now)
    retired_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
