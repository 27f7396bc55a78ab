"""In-memory fakes of the cart's ports: the catalog (:class:`CatalogPort`) and the store
(:class:`CartRepository` behind a unit of work), for unit tests without a database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from services.cart.domain import Availability, Cart, CartItem
from services.cart.ports import CartRepository, CatalogPort, CatalogUnavailable, Product, Stock
from tests.support.fakes import InMemoryUnitOfWork


@dataclass
class _StoredCart:
    items: list[CartItem] = field(default_factory=list)
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class InMemoryCartRepository(CartRepository):
    """Carts in a dict (what :class:`services.cart.store.SqlCartRepository` keeps in tables:
    lines with their last known catalog data, never their availability)."""

    def __init__(self, carts: dict[str, _StoredCart]) -> None:
        self.carts = carts
        self.locked: set[str] = set()

    def lock(self, user_id: str) -> None:
        self.carts.setdefault(user_id, _StoredCart())
        self.locked.add(user_id)

    def load(self, user_id: str) -> Cart:
        stored = self.carts.get(user_id)
        if stored is None:
            return Cart(user_id)
        return Cart(user_id, list(stored.items), updated_at=stored.updated_at)

    def save(self, cart: Cart) -> None:
        assert cart.user_id in self.locked, "save() without lock() in this unit of work"
        now = datetime.now(UTC)
        self.carts[cart.user_id] = _StoredCart(
            [replace(i, availability=Availability.UNKNOWN, available_quantity=None)
             for i in cart.items],
            now,
        )
        cart.updated_at = now

    def remember_prices(self, user_id: str, items: Iterable[CartItem]) -> None:
        stored = self.carts.get(user_id)
        if stored is None:
            return
        fresh = {i.product_id: i for i in items}
        stored.items = [
            replace(line, sku=f.sku, name=f.name, unit_price=f.unit_price, currency=f.currency)
            if (f := fresh.get(line.product_id)) is not None else line
            for line in stored.items
        ]

    def clear(self, user_id: str) -> int:
        stored = self.carts.get(user_id)
        if stored is None:
            return 0
        count = len(stored.items)
        stored.items = []
        stored.updated_at = datetime.now(UTC)
        return count


class InMemoryCartUnitOfWork(
    InMemoryUnitOfWork[dict[str, _StoredCart], InMemoryCartRepository]
):
    """A :class:`charter.unit_of_work.UnitOfWork` over :class:`InMemoryCartRepository`
    (the shared :class:`tests.support.fakes.InMemoryUnitOfWork`)."""

    def __init__(self) -> None:
        super().__init__({}, InMemoryCartRepository)

    @property
    def carts(self) -> dict[str, _StoredCart]:
        """The committed carts by user id."""
        return self.state


class InMemoryCatalog(CatalogPort):
    """A catalog held in dicts: for tests and for running the cart alone.

    ``down = True`` makes every call raise :class:`CatalogUnavailable`.
    """

    def __init__(self) -> None:
        self.products: dict[int, Product] = {}
        self.stock: dict[int, Stock] = {}
        self.down = False
        self.calls: list[tuple[str, int]] = []

    def put(
        self,
        product_id: int,
        *,
        name: str | None = None,
        price: int = 1000,
        currency: str = "EUR",
        active: bool = True,
        available: int = 100,
        sku: str | None = None,
    ) -> Product:
        """Add or replace a product with ``available`` units in stock."""
        product = Product(
            id=product_id,
            sku=sku or f"SKU-{product_id}",
            name=name or f"Product {product_id}",
            price=price,
            currency=currency,
            active=active,
        )
        self.products[product_id] = product
        self.stock[product_id] = Stock(on_hand=available, reserved=0, available=available)
        return product

    def _check(self, kind: str, product_id: int) -> None:
        self.calls.append((kind, product_id))
        if self.down:
            raise CatalogUnavailable("the catalog is unavailable")

    def get_product(self, product_id: int) -> Product | None:
        self._check("product", product_id)
        return self.products.get(product_id)

    def get_stock(self, product_id: int) -> Stock | None:
        self._check("stock", product_id)
        return self.stock.get(product_id)
