"""The cart's view of the catalog: a port (:class:`CatalogClient`) and its HTTP adapter.

The use cases only know the port. :class:`HttpCatalogClient` calls the catalog API
(``GET /v1/products/{id}`` and ``GET /v1/products/{id}/stock``, scope ``catalog:read``)
through :class:`charter.http.HttpClient` (timeouts, correlation id, bounded retries).
"Not found" is an answer (``None``); anything that prevents an answer — the catalog is
down, slow, answers 5xx or garbage, or no token can be had — raises
:class:`CatalogUnavailable`.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import Any

from charter import config
from charter.http import HttpClient, TokenSource
from charter.problems import ServiceUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


class CatalogUnavailable(ServiceUnavailable):
    """The catalog could not answer (unreachable, timed out, failed, or malformed answer)."""

    title = "Service Unavailable"


@dataclass(frozen=True)
class Product:
    """What the cart needs to know about a catalog product."""

    id: int
    sku: str
    name: str
    price: int
    currency: str
    active: bool


@dataclass(frozen=True)
class Stock:
    """A product's stock level."""

    on_hand: int
    reserved: int
    available: int


class CatalogClient(abc.ABC):
    """The port: product data and stock levels by product id."""

    @abc.abstractmethod
    def get_product(self, product_id: int) -> Product | None:
        """The product, ``None`` if the catalog does not know it; raises CatalogUnavailable."""

    @abc.abstractmethod
    def get_stock(self, product_id: int) -> Stock | None:
        """The stock level, ``None`` if unknown; raises CatalogUnavailable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections)."""


def catalog_timeout() -> float:
    """``CATALOG_TIMEOUT`` seconds (default 2)."""
    raw = config.env("CATALOG_TIMEOUT")
    try:
        value = float(raw) if raw is not None else DEFAULT_TIMEOUT
    except ValueError as exc:
        raise config.ConfigError("CATALOG_TIMEOUT must be a number of seconds") from exc
    if value <= 0:
        raise config.ConfigError("CATALOG_TIMEOUT must be positive")
    return value


class HttpCatalogClient(CatalogClient):
    """The catalog API over HTTP, authenticated with a bearer token from ``token``."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 1,
        http: HttpClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or HttpClient(
            self.base_url, name="catalog", timeout=timeout, retries=retries, token=token
        )

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            response = self.http.get(path, headers={"Accept": "application/json"})
        except ServiceUnavailable as exc:
            raise CatalogUnavailable(exc.detail or "the catalog is unavailable") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            log.warning("catalog GET %s answered %s", path, response.status_code)
            raise CatalogUnavailable(f"the catalog answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise CatalogUnavailable("the catalog sent an invalid answer") from exc
        if not isinstance(body, dict):
            raise CatalogUnavailable("the catalog sent an invalid answer")
        return body

    def get_product(self, product_id: int) -> Product | None:
        body = self._get(f"/v1/products/{int(product_id)}")
        if body is None:
            return None
        try:
            return Product(
                id=int(body["id"]),
                sku=str(body["sku"]),
                name=str(body["name"]),
                price=int(body["price"]),
                currency=str(body["currency"]),
                active=bool(body.get("active", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogUnavailable("the catalog sent an invalid product") from exc

    def get_stock(self, product_id: int) -> Stock | None:
        body = self._get(f"/v1/products/{int(product_id)}/stock")
        if body is None:
            return None
        try:
            return Stock(
                on_hand=int(body["on_hand"]),
                reserved=int(body["reserved"]),
                available=int(body["available"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogUnavailable("the catalog sent an invalid stock level") from exc

    def close(self) -> None:
        self.http.close()


class InMemoryCatalog(CatalogClient):
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
