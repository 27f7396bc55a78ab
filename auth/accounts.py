"""User accounts: registration and password checks (Argon2id via argon2-cffi, at the cost
:mod:`auth.passwords` configures)."""

from __future__ import annotations

import contextlib
import re

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth import passwords
from auth.scopes import ROLES
from auth.store import User

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AccountError(ValueError):
    """A registration request that cannot be accepted."""

    status = 400
    title = "Invalid registration"


class InvalidEmail(AccountError):
    status = 422
    title = "Invalid email address"


class WeakPassword(AccountError):
    status = 422
    title = "Password too weak"


class EmailTaken(AccountError):
    status = 409
    title = "Email already registered"


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
    """Register a user; raises an ``AccountError`` subclass when the input is refused."""
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
    if hashing.hasher.check_needs_rehash(user.password_hash):
        set_password(user, password)
    return user
