"""Demo data: OAuth clients and users (idempotent).

In development mode every client secret and demo password is the environment's value or
a random one generated once under the var dir (:func:`charter.config.secret`; ``charter
up --dev`` prints them). Outside development mode the demo users are never seeded, a
client whose secret is not in the environment is skipped with a warning, and a known
development secret is refused (:class:`charter.config.ConfigError`).

Service clients (:func:`seed_service_clients`) come from the dependency manifest: one
client per service that calls other APIs with its own identity, client id = service
name, scopes derived from its declared calls (:func:`auth.scopes.service_clients`),
secret from ``<SERVICE>_CLIENT_SECRET``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete

from auth import accounts, scopes
from auth.scopes import ALL_SCOPES, join
from auth.store import Client
from charter import config
from charter.db import Database
from charter.security.client_credentials import client_secret_variable

log = logging.getLogger(__name__)

_READ_ONLY = [s for s in ALL_SCOPES if s.endswith(":read")]
DEMO_CLI_SCOPE = join(["catalog:read", "catalog:write", "cart:read", "cart:write", *_READ_ONLY])
SWAGGER_UI_SCOPE = join(ALL_SCOPES)  # intersected with the user's role at each grant
# The former all-powerful client shared by every service: deleted wherever it still exists.
RETIRED_CLIENTS = ("charter-internal",)


@dataclass(frozen=True)
class DemoUser:
    email: str
    role: str
    env: str


DEMO_USERS = (
    DemoUser("alice@example.com", "customer", "DEMO_ALICE_PASSWORD"),
    DemoUser("staff@example.com", "staff", "DEMO_STAFF_PASSWORD"),
    DemoUser("admin@example.com", "admin", "DEMO_ADMIN_PASSWORD"),
)


def _api_versions() -> list[tuple[str, str]]:
    """``(api, "v<major>")`` for every spec under ``openapi/`` (what the gateway serves)."""
    found = []
    for spec in sorted(config.OPENAPI_DIR.glob("*/v*.yaml")):
        major = spec.stem[1:]
        if spec.parent.name != "common" and major.isdigit():
            found.append((spec.parent.name, spec.stem))
    return found


def swagger_redirect_uris() -> list[str]:
    """Only the ``oauth2-redirect.html`` pages of real Swagger UIs.

    The gateway's per-API UIs (``<gateway>/<api>/v<major>/ui/``, also under
    ``GATEWAY_PUBLIC_URL``) and its root redirect page (used by ``charter token`` and the
    demo); with ``CHARTER_MTLS=0`` also each API service's own UI on its plain-HTTP port
    (with mTLS on, a browser cannot reach a service). Never auth's or another port where
    no Swagger UI lives. More URIs come from ``SWAGGER_UI_REDIRECT_URIS``, comma-separated.
    """
    versions = _api_versions()
    gateways = [config.service_url("gateway")]
    public = (config.env("GATEWAY_PUBLIC_URL") or "").rstrip("/")
    if public:
        gateways.append(public)
    if gateways[0] == f"http://127.0.0.1:{config.port('gateway')}":
        gateways.append(f"http://localhost:{config.port('gateway')}")
    uris: list[str] = []
    for gateway in gateways:
        uris += [f"{gateway}/{api}/{version}/ui/oauth2-redirect.html" for api, version in versions]
        uris.append(f"{gateway}/ui/oauth2-redirect.html")
    if not config.mtls_enabled():
        for api, version in versions:
            if api in config.PORTS:
                port = config.port(api)
                uris += [f"{config.service_url(api)}/{version}/ui/oauth2-redirect.html",
                         f"http://127.0.0.1:{port}/{version}/ui/oauth2-redirect.html",
                         f"http://localhost:{port}/{version}/ui/oauth2-redirect.html"]
    extra = config.env("SWAGGER_UI_REDIRECT_URIS") or ""
    uris += [u.strip() for u in extra.split(",") if u.strip()]
    return list(dict.fromkeys(uris))


def _secret(env_name: str, _unused_default: str | None = None) -> str | None:
    """``env_name``'s secret (see :func:`charter.config.secret`); ``None`` when unset
    outside development mode. Never a hard-coded value."""
    if config.is_development() or config.env(env_name) is not None:
        return config.secret(env_name)  # refuses a known development secret in production
    return None


def _upsert_client(db: Database, client_id: str, secret: str | None, **fields: object) -> None:
    with db.session() as session:
        client = session.get(Client, client_id) or Client(client_id=client_id)
        for name, value in fields.items():
            setattr(client, name, value)
        if secret is not None and not client.check_client_secret(secret):
            client.set_secret(secret)
        session.add(client)


def _upsert_user(db: Database, demo: DemoUser, password: str) -> None:
    with db.session() as session:
        user = accounts.find_by_email(session, demo.email)
        if user is None:
            accounts.create_user(session, demo.email, password, demo.role)
            return
        user.role = demo.role
        if not accounts.verify_password(user, password):
            accounts.set_password(user, password)


def seed_service_clients(db: Database) -> dict[str, str]:
    """Register one client per service from the manifest; delete every other service client.

    A client named after a platform component that declares no calls (any more), and the
    retired shared client, are deleted with their tokens. A secret that is not set outside
    development mode skips that client with a warning naming the variable.
    """
    out: dict[str, str] = {}
    wanted = scopes.service_clients()
    for client_id, scope in wanted.items():
        variable = client_secret_variable(client_id)
        secret = _secret(variable)
        if secret is None:
            log.warning("%s not set: client %s not seeded", variable, client_id)
            continue
        _upsert_client(
            db,
            client_id,
            secret,
            client_name=f"{client_id} service",
            grant_types=["client_credentials"],
            response_types=[],
            redirect_uris=[],
            scope=scope,
            token_endpoint_auth_method="client_secret_basic",
        )
        out[f"client {client_id}"] = f"service client, scope {scope!r} (secret: {variable})"
    retired = set(RETIRED_CLIENTS) | (set(config.PORTS) - set(wanted))
    with db.session() as session:
        session.execute(delete(Client).where(Client.client_id.in_(sorted(retired))))
    return out


def seed(db: Database) -> dict[str, str]:
    """Create or update the demo clients and users; returns what to print (with secrets)."""
    out: dict[str, str] = {}
    confidential = {
        "demo-cli": ("DEMO_CLI_SECRET", None, "Demo CLI", DEMO_CLI_SCOPE),
    }
    for client_id, (env_name, dev_default, name, scope) in confidential.items():
        secret = _secret(env_name, dev_default)
        if secret is None:
            log.warning("%s not set: client %s not seeded", env_name, client_id)
            continue
        _upsert_client(
            db,
            client_id,
            secret,
            client_name=name,
            grant_types=["client_credentials"],
            response_types=[],
            redirect_uris=[],
            scope=scope,
            token_endpoint_auth_method="client_secret_basic",
        )
        out[f"client {client_id}"] = f"secret {secret} (client_credentials)"

    _upsert_client(
        db,
        "swagger-ui",
        None,
        client_name="Swagger UI",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        redirect_uris=swagger_redirect_uris(),
        scope=SWAGGER_UI_SCOPE,
        token_endpoint_auth_method="none",
    )
    out["client swagger-ui"] = "public, authorization_code + PKCE (S256)"
    out.update(seed_service_clients(db))

    if not config.is_development():
        return out  # demo users exist only in development mode
    for demo in DEMO_USERS:
        password = config.secret(demo.env)
        _upsert_user(db, demo, password)
        out[f"user {demo.email}"] = f"password {password} ({demo.role})"
    return out
