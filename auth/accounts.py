"""User accounts: registration, password checks (Argon2id via argon2-cffi, at the cost
:mod:`auth.passwords` configures), disabling and re-enabling."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth import passwords
from auth.events import user_registered
from auth.scopes import ROLES
from auth.store import User, last_subject_revocation, now, outbox, revoke_subject

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AccountError(ValueError):
    """A registration request that cannot be accepted."""

    status = 400
    title = "Invalid registration"
    kind = "invalid-registration"  # the problem type (charter.problem_types)


class InvalidEmail(AccountError):
    status = 422
    title = "Invalid email address"
    kind = "invalid-email"


class WeakPassword(AccountError):
    status = 422
    title = "Password too weak"
    kind = "weak-password"


class EmailTaken(AccountError):
    status = 409
    title = "Email already registered"
    kind = "email-taken"


class UnknownAccount(LookupError):
    """No account has this email address."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_new_credentials(email: str, password: str) -> str:
    """Validate registration input; returns the normalised email."""
    email = normalize_email(email or "")
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidEmail("Enter a valid email address.")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.")
    return email


def find_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == normalize_email(email))).first()


def create_user(session: Session, email: str, password: str, role: str = "customer") -> User:
    """Register a user; raises an ``AccountError`` subclass when the input is refused.

    ``auth.UserRegistered`` goes to the outbox in the caller's transaction: it commits
    with the new user or not at all."""
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}.")
    email = check_new_credentials(email, password)
    if find_by_email(session, email) is not None:
        raise EmailTaken("An account with this email address already exists.")
    user = User(email=email, password_hash=passwords.current().hasher.hash(password), role=role)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration won the race
        raise EmailTaken("An account with this email address already exists.") from exc
    outbox.add(session, user_registered(user.id, user.role))
    return user


def verify_password(user: User, password: str) -> bool:
    try:
        return passwords.current().hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(user: User, password: str) -> None:
    user.password_hash = passwords.current().hasher.hash(password)


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with these credentials, or ``None`` (timing kept similar either way)."""
    hashing = passwords.current()
    user = find_by_email(session, email or "")
    if user is None or not password:
        # Verifying a dummy hash of the same cost keeps the answer's timing alike.
        with contextlib.suppress(VerificationError):
            hashing.hasher.verify(hashing.dummy_hash, password or "x")
        return None
    if not verify_password(user, password):
        return None
    if user.is_disabled:
        # Checked only after the full Argon2 verification, and answered like a wrong
        # password: neither the message nor the timing tells that the account exists.
        log.info("sign-in refused: account disabled", extra={"user_id": user.id})
        return None
    if hashing.hasher.check_needs_rehash(user.password_hash):
        set_password(user, password)
    return user


def _existing(session: Session, email: str) -> User:
    user = find_by_email(session, email or "")
    if user is None:
        raise UnknownAccount(f"no account with the email address {normalize_email(email)!r}")
    return user


def disable_user(session: Session, email: str, *, token_lifetime: int) -> User:
    """Disable an account (idempotent) and, in the same transaction, revoke everything it
    holds: its refresh tokens, and through the revocation feed every access token of its
    ``sub`` issued until now. ``token_lifetime`` is the access-token TTL plus leeway (how
    long a token issued now can be accepted). Raises :class:`UnknownAccount`."""
    user = _existing(session, email)
    if user.disabled_at is None:
        user.disabled_at = now()
        revoke_subject(session, user.id, user.disabled_at + token_lifetime,
                       revoked_at=user.disabled_at)
        log.info("account disabled", extra={"user_id": user.id})
    return user


def enable_user(session: Session, email: str, *,
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.time) -> User:
    """Re-enable a disabled account (idempotent). Tokens issued before it was disabled
    stay refused. A ``subject`` revocation refuses tokens issued in its second too, so
    this returns only once that second is over (at most 1 s), else a token issued right
    after re-enabling would be refused. Raises :class:`UnknownAccount`."""
    user = _existing(session, email)
    if user.disabled_at is None:
        return user
    revoked_at = max(user.disabled_at, last_subject_revocation(session, user.id) or 0)
    remaining = revoked_at + 1 - clock()
    if remaining > 0:
        sleep(remaining)
    user.disabled_at = None
    log.info("account enabled", extra={"user_id": user.id})
    return user
