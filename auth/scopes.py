"""Every scope of the platform, which role may hold which scope, and the service clients.

Service clients (one per platform service that calls other APIs with its own identity)
are not typed here: :func:`service_clients` derives them and their exact scopes from the
dependency manifest (``governance/dependencies.yaml``, :mod:`charter.dependencies`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from charter import dependencies

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "catalog:read": "Read products, categories and stock",
    "catalog:write": "Create and change products, categories and stock",
    "catalog:reserve": "Reserve, commit and release stock (internal)",
    "cart:read": "Read your cart",
    "cart:write": "Change your cart",
    "orders:read": "Read your orders",
    "orders:write": "Place and cancel orders",
    "payments:read": "Read payments",
    "payments:write": "Authorise and refund payments",
    "exchange:read": "Read currency rates",
    "loyalty:read": "Read loyalty points",
    "loyalty:write": "Award and redeem loyalty points",
    "notifications:read": "Read sent notifications",
    "notifications:write": "Send notifications",
}

ALL_SCOPES: tuple[str, ...] = tuple(SCOPE_DESCRIPTIONS)

ROLES: tuple[str, ...] = ("customer", "staff", "admin")
SERVICE_ROLE = "service"  # carried by tokens of service clients (client credentials)

_CUSTOMER = (
    "catalog:read",
    "cart:read",
    "cart:write",
    "orders:read",
    "orders:write",
    "payments:read",
    "payments:write",
    "exchange:read",
    "loyalty:read",
    "loyalty:write",  # redeem own points; awards and reversals are internal to orders
)

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "customer": frozenset(_CUSTOMER),
    "staff": frozenset(_CUSTOMER + ("catalog:write", "notifications:read")),
    "admin": frozenset(ALL_SCOPES),
}


def split(scope: str | Iterable[str] | None) -> list[str]:
    """A scope string (or list) as a list without duplicates, order kept."""
    items = scope.split() if isinstance(scope, str) else list(scope or [])
    return list(dict.fromkeys(items))


def join(scopes: Iterable[str]) -> str:
    """Scopes in platform order as one space-separated string."""
    wanted = set(scopes)
    return " ".join(s for s in ALL_SCOPES if s in wanted)


def scopes_for_role(role: str) -> frozenset[str]:
    """The scopes a role may hold (an unknown role holds none)."""
    return ROLE_SCOPES.get(role, frozenset())


def grant_for_user(requested: str | None, client_allowed: str, role: str) -> str:
    """A user's granted scope: requested ∩ client's ∩ role's (nothing requested → client's)."""
    allowed = set(split(client_allowed))
    wanted = set(split(requested)) if requested else allowed
    return join(wanted & allowed & scopes_for_role(role))


def service_clients() -> Mapping[str, str]:
    """Service client id → its exact scope string, derived from the dependency manifest.

    ``ValueError`` when the manifest derives a scope this authorization server does not
    know (the specs and :data:`SCOPE_DESCRIPTIONS` disagree).
    """
    manifest = dependencies.load()
    clients = {name: manifest.client_scopes(name) for name in manifest.clients()}
    for name, wanted in clients.items():
        unknown = sorted(set(wanted) - set(ALL_SCOPES))
        if unknown:
            raise ValueError(f"service client {name} needs unknown scopes {unknown}")
    return {name: join(wanted) for name, wanted in clients.items()}


def is_service_client(client_id: str) -> bool:
    """Is ``client_id`` the OAuth client of a platform service (role ``service``)?"""
    return client_id in service_clients()
