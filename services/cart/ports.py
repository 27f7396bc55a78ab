"""What the cart needs from outside: its own store, and the catalog's products and stock.

The use cases only know these protocols. :class:`CartRepository` is reached through a
:class:`charter.unit_of_work.UnitOfWork` (``with uow.write() as repo``); the SQLAlchemy
implementation is :class:`services.cart.store.SqlCartRepository`. The shared typed client
:class:`services.catalog_client.HttpCatalogClient` implements :class:`CatalogPort` over
HTTP. Tests use in-memory fakes of both (``tests/cart/cart_fakes.py``). "Not found" is an
answer (``None``); anything that prevents the catalog from answering raises
:class:`CatalogUnavailable` (503).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from services.catalog_client.models import CatalogUnavailable, Product, Stock

from .domain import Cart, CartItem

__all__ = ["CartRepository", "CatalogPort", "CatalogUnavailable", "Product", "Stock"]


class CartRepository(Protocol):
    """Carts, loaded and stored inside one unit of work (its transaction)."""

    def lock(self, user_id: str) -> None:
        """Create the user's cart if needed and hold it for change until the unit of work
        ends, so concurrent changes to one cart are serialised (no lost update)."""
        ...

    def load(self, user_id: str) -> Cart:
        """The user's cart (empty if it was never created)."""
        ...

    def save(self, cart: Cart) -> None:
        """Make the stored lines equal to ``cart.items`` (after :meth:`lock`)."""
        ...

    def remember_prices(self, user_id: str, items: Iterable[CartItem]) -> None:
        """Store fresh catalog data (sku, name, price, currency) of lines that still exist."""
        ...

    def clear(self, user_id: str) -> int:
        """Delete every line of the user's cart; how many there were."""
        ...


class CatalogPort(Protocol):
    """Product data and stock levels by product id."""

    def get_product(self, product_id: int) -> Product | None:
        """The product, ``None`` if the catalog does not know it; raises CatalogUnavailable."""
        ...

    def get_stock(self, product_id: int) -> Stock | None:
        """The stock level, ``None`` if unknown; raises CatalogUnavailable."""
        ...

    def close(self) -> None:
        """Release resources (connections)."""
