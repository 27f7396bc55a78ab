"""Service identities at auth: one client per service, exactly its derived scopes."""

from __future__ import annotations

import pytest
from auth_helpers import CLI, client_credentials, jwks_verify
from flask.testing import FlaskClient

from auth.seed import seed
from auth.store import Client
from charter import config, dependencies
from charter.db import Database
from charter.security.client_credentials import client_secret_variable

SERVICE_CLIENTS = ("cart", "orders")


def derived(service: str) -> str:
    """The scopes the dependency manifest derives for ``service``'s client."""
    return dependencies.load().client_scope(service)


def creds(service: str) -> tuple[str, str]:
    """The service's client id and the (development) secret its process would read."""
    return service, config.secret(client_secret_variable(service))


def test_one_client_per_calling_service_and_no_shared_client(db: Database) -> None:
    with db.session() as session:
        for service in SERVICE_CLIENTS:
            client = session.get(Client, service)
            assert client is not None and client.grant_types == ["client_credentials"]
            assert sorted(client.scope.split()) == sorted(derived(service).split())
        assert session.get(Client, "charter-internal") is None
        # Services that call nothing with their own identity hold no credential at all.
        for service in ("catalog", "payments", "exchange", "loyalty", "notifications",
                        "gateway"):
            assert session.get(Client, service) is None


@pytest.mark.parametrize("service", SERVICE_CLIENTS)
def test_a_service_gets_exactly_its_derived_scopes(client: FlaskClient, service: str) -> None:
    wanted = sorted(derived(service).split())
    response = client_credentials(client, creds(service), scope=derived(service))
    assert response.status_code == 200, response.get_json()
    assert sorted(response.get_json()["scope"].split()) == wanted
    claims = jwks_verify(client, response.get_json()["access_token"])
    assert claims["sub"] == service and claims["client_id"] == service
    assert claims["role"] == "service"
    assert sorted(claims["scope"].split()) == wanted
    # Nothing requested: still exactly the derived scopes.
    assert sorted(client_credentials(client, creds(service)).get_json()["scope"].split()) \
        == wanted


@pytest.mark.parametrize(("service", "extra"), [
    ("cart", "catalog:reserve"),      # orders' scope
    ("cart", "catalog:write"),
    ("orders", "catalog:write"),      # catalog admin: never orders'
    ("orders", "loyalty:read"),
    ("orders", "cart:read"),          # orders reads carts only with the user's token
])
def test_asking_for_more_is_invalid_scope(client: FlaskClient, service: str,
                                          extra: str) -> None:
    response = client_credentials(client, creds(service), scope=f"{derived(service)} {extra}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"
    assert "access_token" not in response.get_json()


def test_the_shared_client_is_gone(client: FlaskClient) -> None:
    response = client_credentials(client, ("charter-internal", "charter-internal-secret"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_one_service_cannot_use_another_services_secret(client: FlaskClient) -> None:
    response = client_credentials(client, ("orders", creds("cart")[1]))
    assert response.status_code == 401


def test_other_clients_carry_no_service_role(client: FlaskClient) -> None:
    token = client_credentials(client, CLI).get_json()["access_token"]
    assert "role" not in jwks_verify(client, token)


def test_seed_retires_the_shared_client_and_stale_service_clients(db: Database) -> None:
    with db.session() as session:
        for stale in ("charter-internal", "payments"):
            old = Client(client_id=stale, client_name="old", grant_types=["client_credentials"],
                         response_types=[], redirect_uris=[], scope="catalog:read",
                         token_endpoint_auth_method="client_secret_basic")
            old.set_secret("old-secret-value")
            session.add(old)
    seed(db)
    with db.session() as session:
        assert session.get(Client, "charter-internal") is None
        assert session.get(Client, "payments") is None
        assert session.get(Client, "demo-cli") is not None  # not a service client: kept


def test_production_seed_takes_service_secrets_from_the_environment(
        db: Database, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("DEMO_CLI_SECRET", "demo-cli-secret-from-the-vault")
    monkeypatch.setenv("ORDERS_CLIENT_SECRET", "orders-secret-from-the-vault")
    monkeypatch.delenv("CART_CLIENT_SECRET", raising=False)
    result = seed(db)
    assert "client orders" in result and "client cart" not in result
    assert "orders-secret-from-the-vault" not in " ".join(result.values())  # never printed
    monkeypatch.setenv("CHARTER_ENV", "development")
    ok = client_credentials(client, ("orders", "orders-secret-from-the-vault"))
    assert ok.status_code == 200
