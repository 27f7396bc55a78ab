"""Token-signing keys: creation, rotation, the published JWKS.

Tokens are always signed with the newest active key. ``rotate`` retires the active key
and creates a new one; the JWKS keeps publishing a retired key until every token it
signed has expired (retirement younger than the longest access-token lifetime plus
leeway), so verifiers with a fresh JWKS accept tokens issued just before a rotation.

Private keys at rest: the PEM is stored unencrypted in the auth database. That is
acceptable for development; in production protect the database (or move keys to a
KMS/HSM or a mounted Secret) — the ``signing_keys`` table is the single place to change.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from auth.store import SigningKey, now
from charter.db import Database

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
RSA_BITS = 2048


def _new_key() -> tuple[str, str]:
    key = RSAKey.generate_key(RSA_BITS, parameters={"alg": ALGORITHM, "use": "sig"})
    kid = key.thumbprint()
    pem = key.as_pem(private=True)
    return kid, pem.decode("ascii") if isinstance(pem, bytes) else pem


def create_key(session: Session) -> SigningKey:
    """Add a new active key (does not retire others)."""
    kid, pem = _new_key()
    row = SigningKey(kid=kid, algorithm=ALGORITHM, private_key_pem=pem, created_at=now())
    session.add(row)
    session.flush()
    log.info("created signing key", extra={"kid": kid})
    return row


def active_key(session: Session) -> SigningKey | None:
    """The newest key that is not retired."""
    stmt = (
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.kid)
        .limit(1)
    )
    return session.scalars(stmt).first()


def ensure_key(db: Database) -> str:
    """The active key's kid, creating the first key if there is none."""
    with db.session() as session:
        row = active_key(session) or create_key(session)
        return row.kid


def rotate(db: Database) -> str:
    """Retire every active key and create a new one; returns the new kid."""
    with db.session() as session:
        session.execute(
            update(SigningKey).where(SigningKey.retired_at.is_(None)).values(retired_at=now())
        )
        row = create_key(session)
        kid = row.kid
    log.info("rotated signing key", extra={"kid": kid})
    return kid


def published_keys(session: Session, retention: int) -> list[SigningKey]:
    """Active keys (newest first), then keys retired less than ``retention`` seconds ago."""
    cutoff = now() - retention
    stmt = (
        select(SigningKey)
        .where((SigningKey.retired_at.is_(None)) | (SigningKey.retired_at > cutoff))
        .order_by(
            case((SigningKey.retired_at.is_(None), 0), else_=1),
            SigningKey.created_at.desc(),
            SigningKey.retired_at.desc(),
            SigningKey.kid,
        )
    )
    return list(session.scalars(stmt))


class KeyRing:
    """Reads keys from the database (so a rotation by another process is seen at once)
    and caches the parsed key objects by kid."""

    def __init__(self, db: Database, retention: int) -> None:
        self.db = db
        self.retention = retention
        self._parsed: dict[str, RSAKey] = {}
        self._lock = threading.Lock()

    def _parse(self, row: SigningKey) -> RSAKey:
        with self._lock:
            key = self._parsed.get(row.kid)
            if key is None:
                key = RSAKey.import_key(
                    row.private_key_pem,
                    parameters={"kid": row.kid, "alg": row.algorithm, "use": "sig"},
                )
                self._parsed[row.kid] = key
            return key

    def signing_key(self) -> RSAKey:
        """The private key tokens are signed with now (created on first use)."""
        with self.db.session() as session:
            row = active_key(session) or create_key(session)
            return self._parse(row)

    def signing_keyset(self) -> KeySet:
        """A key set holding only the signing key, for joserfc (sets ``kid`` in the header)."""
        return KeySet([self.signing_key()])

    def _published(self) -> list[RSAKey]:
        with self.db.session() as session:
            rows = published_keys(session, self.retention)
            if not rows:
                rows = [create_key(session)]
            return [self._parse(row) for row in rows]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document."""
        keys = []
        for key in self._published():
            data = key.as_dict(private=False)
            data.update({"kid": str(key.kid), "alg": key.alg or ALGORITHM, "use": "sig"})
            keys.append(data)
        return {"keys": keys}

    def verification_keyset(self) -> KeySet:
        """Public keys of every published key, for verifying our own tokens."""
        return KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]
