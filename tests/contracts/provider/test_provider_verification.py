"""Every provider honours every pact its consumers committed (contracts/pacts/).

One test per pact file: the provider starts for real (its app, a fresh database, mTLS),
the Pact verifier replays each interaction after the provider-state handler set up its
state, with a real token of the consumer presented through the consumer's certificate.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from charter.testing import TokenFactory
from tests.contracts import pacts
from tests.contracts.provider.states import PROVIDERS
from tests.contracts.provider.verify import consumer_token, running_provider, verify

PACT_FILES = pacts.committed_pacts()


@pytest.fixture(autouse=True)
def _mtls_on(monkeypatch: pytest.MonkeyPatch, pki_dir: Path) -> None:
    """Mutual TLS and the internal-callers check on, as deployed."""
    monkeypatch.setenv("CHARTER_MTLS", "1")
    monkeypatch.setenv("CHARTER_PKI_DIR", str(pki_dir))
    monkeypatch.delenv("CHARTER_SERVICE", raising=False)


def pacticipants(path: Path) -> tuple[str, str]:
    document = pacts.load(path)
    return document["consumer"]["name"], document["provider"]["name"]


def test_there_are_pacts_to_verify() -> None:
    assert PACT_FILES, "no pact in contracts/pacts/"
    providers = {pacticipants(path)[1] for path in PACT_FILES}
    assert providers <= set(PROVIDERS), f"providers without states: {providers - set(PROVIDERS)}"


@pytest.mark.parametrize("pact_file", PACT_FILES, ids=[p.stem for p in PACT_FILES])
def test_provider_honours_pact(pact_file: Path, tokens: TokenFactory, pki_dir: Path,
                               tmp_path: Path) -> None:
    consumer, provider = pacticipants(pact_file)
    token = consumer_token(tokens, consumer, provider)
    with running_provider(provider, consumer, tokens, pki_dir, tmp_path) as running:
        seconds = verify(pact_file, running, token)
    print(f"{pact_file.name}: verified in {seconds:.2f} s")


def test_internal_operations_refuse_another_callers_certificate(
        tokens: TokenFactory, pki_dir: Path, tmp_path: Path) -> None:
    """Security stays on during verification: the relay as cart, with a token of the cart
    client, may not reserve stock (an internal operation of orders)."""
    token = tokens.token(sub="cart", scope="catalog:read catalog:reserve", role="service",
                         client_id="cart")
    with running_provider("catalog", "cart", tokens, pki_dir, tmp_path) as running:
        response = httpx.post(f"{running.relay.url}/v1/reservations", timeout=10, json={
            "order_id": "ord-1", "items": [{"product_id": 1, "quantity": 1}]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "key-00000001"})
    assert response.status_code == 403, response.text
    assert "internal" in response.json()["detail"]


def test_no_certificate_no_connection(tokens: TokenFactory, pki_dir: Path,
                                      tmp_path: Path) -> None:
    """The provider itself is reachable only with a client certificate of the platform CA."""
    with running_provider("catalog", "cart", tokens, pki_dir, tmp_path) as running, \
            pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(f"{running.server.url}/v1/products/1", verify=False, timeout=5)
