"""Who is calling, from the validated token: the basis of every ownership check.

A customer may act only on their own resources. Staff and admins may act on anyone's;
so may platform services using their own client-credentials token (``role: service``).
Any other client acts as itself (its ``sub`` is its client id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from charter.problems import Forbidden

PRIVILEGED_ROLES = frozenset({"staff", "admin", "service"})


@dataclass(frozen=True)
class Principal:
    """The caller: subject, role (``None`` for plain clients) and scopes."""

    sub: str
    role: str | None
    scopes: frozenset[str]
    client_id: str | None = None

    @classmethod
    def from_token_info(cls, token_info: Mapping[str, Any]) -> Principal:
        """Build from Connexion's ``token_info`` (the verified claims)."""
        scope = token_info.get("scope", [])
        scopes = scope.split() if isinstance(scope, str) else list(scope)
        return cls(
            sub=str(token_info["sub"]),
            role=token_info.get("role"),
            scopes=frozenset(scopes),
            client_id=token_info.get("client_id"),
        )

    @property
    def is_privileged(self) -> bool:
        """Staff, admin or a platform service."""
        return self.role in PRIVILEGED_ROLES

    def can_access(self, owner_id: str) -> bool:
        """May this caller see or change a resource owned by ``owner_id``?"""
        return self.is_privileged or owner_id == self.sub

    def require_privileged(self) -> None:
        """Raise 403 unless staff, admin or a platform service."""
        if not self.is_privileged:
            raise Forbidden("this operation is for staff or platform services")
