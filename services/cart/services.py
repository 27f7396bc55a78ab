"""The cart's use cases: domain rules + the cart repository + the catalog port (:mod:`.ports`).

Each use case works through a unit of work (:class:`charter.unit_of_work.UnitOfWork`):
``with self.uow.write() as repo`` for a change, ``self.uow.read()`` for a query. No
SQLAlchemy here: ``app.py`` passes the SQL implementation, tests may pass an in-memory one.

Catalog calls never happen inside a database transaction (no lock is held while waiting
on the network). Changes that need the catalog (adding, increasing a quantity) answer
503 when it cannot be reached; reads degrade to the last known prices (``stale``);
removing and decreasing need no catalog and always work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from charter.problems import Conflict, NotFound, Unprocessable
from charter.unit_of_work import UnitOfWork

from .domain import (
    Availability,
    Cart,
    CartError,
    CartItem,
    ItemNotInCart,
    Pricing,
    availability_for,
    check_quantity,
)
from .ports import CartRepository, CatalogPort, CatalogUnavailable, Product, Stock

log = logging.getLogger(__name__)


@contextmanager
def _rules() -> Iterator[None]:
    """Domain errors as problems: broken rule → 422, missing line → 404."""
    try:
        yield
    except ItemNotInCart as exc:
        raise NotFound(str(exc)) from exc
    except CartError as exc:
        raise Unprocessable(str(exc)) from exc


@dataclass(frozen=True)
class AddResult:
    """The cart after an add, and whether the product got a new line."""

    cart: Cart
    created: bool


class CartService:
    """Everything a caller can do with a cart."""

    def __init__(self, uow: UnitOfWork[CartRepository], catalog: CatalogPort) -> None:
        self.uow = uow
        self.catalog = catalog

    # -- reads ---------------------------------------------------------------------------

    def view(self, user_id: str) -> Cart:
        """The cart with prices and availability refreshed from the catalog if possible."""
        with self.uow.read() as repo:
            cart = repo.load(user_id)
        if not cart.items:
            return cart
        changed: list[CartItem] = []
        stale = False
        for item in list(cart.items):
            if stale:  # the catalog already failed once: do not wait on it again
                break
            try:
                fresh = self._refresh(item)
            except CatalogUnavailable as exc:
                log.warning("catalog unavailable, cart priced stale: %s", exc)
                stale = True
                break
            cart.reprice(fresh)
            if (fresh.sku, fresh.name, fresh.unit_price, fresh.currency) != (
                item.sku, item.name, item.unit_price, item.currency,
            ):
                changed.append(fresh)
        cart.pricing = Pricing.STALE if stale else Pricing.CURRENT
        if changed:
            with self.uow.write() as repo:
                repo.remember_prices(user_id, changed)
        return cart

    def _refresh(self, item: CartItem) -> CartItem:
        product = self.catalog.get_product(item.product_id)
        if product is None:  # removed from the catalog: keep the last known data
            return replace(
                item, availability=Availability.UNAVAILABLE, available_quantity=0
            )
        stock = self.catalog.get_stock(item.product_id) if product.active else None
        available = self._available(stock) if product.active else 0
        return replace(
            item,
            sku=product.sku,
            name=product.name,
            unit_price=product.price,
            currency=product.currency,
            availability=availability_for(product.active, available, item.quantity),
            available_quantity=available,
        )

    @staticmethod
    def _available(stock: Stock | None) -> int:
        return max(0, stock.available) if stock is not None else 0

    # -- changes -------------------------------------------------------------------------

    def _sellable(self, product_id: int) -> tuple[Product, int]:
        """The product and its available units; 404 unknown, 422 inactive, 503 down."""
        product = self.catalog.get_product(product_id)
        if product is None:
            raise NotFound(f"product {product_id} does not exist")
        if not product.active:
            raise Unprocessable(f"product {product_id} is not for sale",
                                kind="product-not-for-sale", product_id=product_id)
        return product, self._available(self.catalog.get_stock(product_id))

    @staticmethod
    def _check_stock(product_id: int, quantity: int, available: int) -> None:
        if available < quantity:
            raise Conflict(
                f"only {available} of product {product_id} available, {quantity} wanted",
                kind="insufficient-stock",
                available=available,
            )

    def add_item(self, user_id: str, product_id: int, quantity: int) -> AddResult:
        """Add ``quantity`` of a product (increasing an existing line)."""
        with _rules():
            check_quantity(quantity)
        product, available = self._sellable(product_id)
        with _rules(), self.uow.write() as repo:
            repo.lock(user_id)
            cart = repo.load(user_id)
            created = cart.find(product_id) is None
            wanted = cart.merged_quantity(product_id, quantity)
            self._check_stock(product_id, wanted, available)
            cart.add(
                CartItem(
                    product_id=product_id,
                    sku=product.sku,
                    name=product.name,
                    unit_price=product.price,
                    currency=product.currency,
                    quantity=quantity,
                )
            )
            repo.save(cart)
        return AddResult(self.view(user_id), created)

    def set_quantity(self, user_id: str, product_id: int, quantity: int) -> Cart:
        """Replace a line's quantity; increases are checked against the catalog's stock."""
        with _rules():
            check_quantity(quantity)
            with self.uow.read() as repo:
                current = repo.load(user_id).find(product_id)
            if current is None:
                raise ItemNotInCart(f"product {product_id} is not in the cart")
            available: int | None = None
            if quantity > current.quantity:
                _product, available = self._sellable(product_id)
                self._check_stock(product_id, quantity, available)
            with self.uow.write() as repo:
                repo.lock(user_id)
                cart = repo.load(user_id)
                cart.set_quantity(product_id, quantity)
                repo.save(cart)
        return self.view(user_id)

    def remove_item(self, user_id: str, product_id: int) -> None:
        """Remove a line (404 if the product is not in the cart)."""
        with _rules(), self.uow.write() as repo:
            repo.lock(user_id)
            cart = repo.load(user_id)
            cart.remove(product_id)
            repo.save(cart)

    def clear(self, user_id: str) -> None:
        """Empty the cart."""
        with self.uow.write() as repo:
            repo.clear(user_id)
