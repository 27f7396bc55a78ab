"""Demo data: OAuth clients and users (idempotent).

Development defaults for secrets and passwords apply only in embedded mode; with
``CHARTER_ENV=production`` an entry whose secret/password is not in the environment is
skipped with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from auth import accounts
from auth.scopes import ALL_SCOPES, join
from auth.store import Client
from charter import config
from charter.db import Database

log = logging.getLogger(__name__)

_READ_ONLY = [s for s in ALL_SCOPES if s.endswith(":read")]
DEMO_CLI_SCOPE = join(["catalog:read", "catalog:write", "cart:read", "cart:write", *_READ_ONLY])
INTERNAL_SCOPE = join(ALL_SCOPES)
UI_PATH = "/v1/ui/oauth2-redirect.html"


@dataclass(frozen=True)
class DemoUser:
    email: str
    role: str
    env: str
    dev_password: str


DEMO_USERS = (
    DemoUser("alice@example.com", "customer", "DEMO_ALICE_PASSWORD", "alice-password-1"),
    DemoUser("staff@example.com", "staff", "DEMO_STAFF_PASSWORD", "staff-password-1"),
    DemoUser("admin@example.com", "admin", "DEMO_ADMIN_PASSWORD", "admin-password-1"),
)


def swagger_redirect_uris() -> list[str]:
    """Swagger UI's oauth2-redirect.html on every service and through the gateway.

    Follows the configured ports/URLs (``<SERVICE>_PORT``, ``<SERVICE>_URL``); more URIs
    (a public host name, say) come from ``SWAGGER_UI_REDIRECT_URIS``, comma-separated.
    """
    uris: list[str] = []
    for name in config.PORTS:
        base = config.service_url(name)
        port = config.port(name)
        # With mTLS on, service URLs are https (a browser needs a client certificate
        # there); the plain-HTTP address of a service serves Swagger UI with CHARTER_MTLS=0.
        uris += [f"{base}{UI_PATH}", f"http://127.0.0.1:{port}{UI_PATH}",
                 f"http://localhost:{port}{UI_PATH}"]
    gateway = config.service_url("gateway")
    uris += [f"{gateway}/{api}{UI_PATH}" for api in config.PORTS]
    uris.append(f"{gateway}/ui/oauth2-redirect.html")
    extra = config.env("SWAGGER_UI_REDIRECT_URIS") or ""
    uris += [u.strip() for u in extra.split(",") if u.strip()]
    return list(dict.fromkeys(uris))


def _secret(env_name: str, dev_default: str) -> str | None:
    value = config.env(env_name)
    if value:
        return value
    return dev_default if config.is_embedded() else None


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


def seed(db: Database) -> dict[str, str]:
    """Create or update the demo clients and users; returns what to print (with secrets)."""
    out: dict[str, str] = {}
    confidential = {
        "demo-cli": ("DEMO_CLI_SECRET", "demo-cli-secret", "Demo CLI", DEMO_CLI_SCOPE),
        "charter-internal": (
            "INTERNAL_CLIENT_SECRET",
            "charter-internal-secret",
            "Charter services",
            INTERNAL_SCOPE,
        ),
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
        scope=INTERNAL_SCOPE,
        token_endpoint_auth_method="none",
    )
    out["client swagger-ui"] = "public, authorization_code + PKCE (S256)"

    for demo in DEMO_USERS:
        password = _secret(demo.env, demo.dev_password)
        if password is None:
            log.warning("%s not set: user %s not seeded", demo.env, demo.email)
            continue
        _upsert_user(db, demo, password)
        out[f"user {demo.email}"] = f"password {password} ({demo.role})"
    return out
