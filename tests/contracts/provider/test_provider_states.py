"""The provider-state dispatch: a state is found by its template and parameters, and a
state no handler knows fails with its name (what the verifier then reports)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from charter.db import Database
from charter.testing import TokenFactory
from tests.contracts.pacts import state
from tests.contracts.provider.states import CatalogStates, UnknownState


@pytest.fixture
def catalog(tmp_path: Path, tokens: TokenFactory,
            migrated_db: Callable[[str, str], Database]) -> CatalogStates:
    states = CatalogStates(migrated_db("catalog", f"sqlite:///{tmp_path / 'c.db'}"), tmp_path)
    states.app(tokens.verifier())
    return states


def test_a_state_is_set_up_and_torn_down(catalog: CatalogStates) -> None:
    name, params = state("product {product_id} exists with {on_hand} in stock",
                         product_id=1, sku="COF-0001", price=2490, currency="EUR", on_hand=5)
    catalog.handle(name, "setup", params)
    assert catalog.service("catalog").get_stock(1).available == 5
    catalog.handle(name, "teardown", params)
    catalog.handle(name, "setup", params)  # the emptied database gives id 1 again
    assert catalog.service("catalog").get_product(1).sku == "COF-0001"


def test_an_unknown_state_names_itself(catalog: CatalogStates) -> None:
    with pytest.raises(UnknownState, match="no handler for the provider state 'a unicorn'"):
        catalog.handle("a unicorn", "setup", {"horns": 1})
    with pytest.raises(UnknownState):  # the name disagrees with its parameters
        catalog.handle("product 7 exists with 5 in stock", "setup",
                       {"product_id": 1, "on_hand": 5})
