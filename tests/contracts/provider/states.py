"""Provider states: for each provider, its real app on its own database and the handlers
that put that database into each state the consumers' pacts name.

A state's name is a template formatted with its parameters (``tests.contracts.pacts.state``);
:meth:`ProviderStates.handle` finds the template whose formatting with the interaction's
parameters gives the name, and calls its handler with the parameters. States are built
through the service's own service layer (or its store, where an id is the consumer's
choice), never with SQL. Every interaction starts from an empty database: the teardown
after each interaction deletes every row of the service's tables (ids restart at 1 on
SQLite) and resets in-memory parts (cache, fake catalog, provider switch).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import connexion
from sqlalchemy import MetaData

from charter.cache import TTLCache
from charter.db import Database
from charter.problems import NotFound, ServiceUnavailable
from charter.security.principal import Principal
from charter.security.tokens import TokenVerifier
from services.cart import app as cart_app
from services.cart import store as cart_store
from services.catalog import app as catalog_app
from services.catalog import store as catalog_store
from services.exchange import app as exchange_app
from services.exchange import store as exchange_store
from services.exchange.clients import TableRateSource
from services.payments import app as payments_app
from services.payments import domain as payments_domain
from services.payments import store as payments_store
from services.payments.clients import DECLINE_TOKENS, SimulatedProvider
from tests.cart.cart_fakes import InMemoryCatalog
from tests.support.apps import dependency

SERVICE = Principal("orders", "service", frozenset(), client_id="orders")
Handler = Callable[..., None]


class UnknownState(LookupError):
    """A pact names a provider state this provider has no handler for."""


class ProviderStates:
    """One provider: its app on ``db`` and its state handlers (subclasses fill them in)."""

    name: ClassVar[str]
    metadata: ClassVar[MetaData]

    def __init__(self, db: Database, workdir: Path) -> None:
        self.db = db
        self.workdir = workdir
        self.flask_app: Any = None

    def create_app(self, verifier: TokenVerifier) -> connexion.FlaskApp:
        """The provider's Connexion app on ``self.db``, trusting ``verifier``."""
        raise NotImplementedError

    def app(self, verifier: TokenVerifier) -> connexion.FlaskApp:
        """Build the app once (the handlers use its service layer)."""
        self.flask_app = self.create_app(verifier)
        return self.flask_app

    def service(self, name: str) -> Any:
        """The app's service-layer object ``name``."""
        return dependency(self.flask_app, name)

    def handlers(self) -> dict[str, Handler]:
        """State-name template → handler taking the state's parameters as keywords."""
        raise NotImplementedError

    def reset(self) -> None:
        """Empty every table of the service (and anything kept in memory)."""
        with self.db.engine.begin() as connection:
            for table in reversed(self.metadata.sorted_tables):
                connection.execute(table.delete())

    def handle(self, state: str, action: str, parameters: dict[str, Any] | None) -> None:
        """The Pact verifier's state callback (runs in this process, in a thread)."""
        if action == "teardown":
            self.reset()
            return
        params = parameters or {}
        for template, handler in self.handlers().items():
            try:
                name = template.format(**params)
            except (KeyError, IndexError):
                continue
            if name == state:
                handler(**params)
                return
        raise UnknownState(f"{self.name} has no handler for the provider state {state!r} "
                           f"(parameters {params}); add one in {__name__}")


class CatalogStates(ProviderStates):
    name = "catalog"
    metadata = catalog_store.metadata

    def create_app(self, verifier: TokenVerifier) -> connexion.FlaskApp:
        self.cache = TTLCache()
        return catalog_app.create_app(db=self.db, verifier=verifier, cache=self.cache)

    def reset(self) -> None:
        super().reset()
        self.cache.clear()

    def handlers(self) -> dict[str, Handler]:
        return {
            "product {product_id} exists with {on_hand} in stock": self.product,
            "product {product_id} does not exist": self.no_product,
            "order {order_id} has a {status} reservation of {quantity} of product "
            "{product_id}": self.reservation,
            "order {order_id} has no reservation": self.no_reservation,
        }

    def product(self, product_id: int, sku: str, price: int, currency: str, on_hand: int,
                **_: Any) -> None:
        catalog = self.service("catalog")
        category = catalog.create_category("coffee", "Coffee")
        product = catalog.create_product(sku, "Espresso beans 1 kg", category.id, price, currency)
        if product.id != product_id:
            raise AssertionError(f"product {product_id} wanted, the catalog created "
                                 f"{product.id} (was the database emptied?)")
        catalog.set_stock(product.id, on_hand)

    def no_product(self, product_id: int) -> None:
        try:
            self.service("catalog").get_product(product_id)
        except NotFound:
            return
        raise AssertionError(f"product {product_id} exists")

    def reservation(self, order_id: str, status: str, quantity: int, product_id: int,
                    **product: Any) -> None:
        self.product(product_id, **product)
        catalog = self.service("catalog")
        catalog.create_reservation(f"state-{uuid.uuid4().hex}", order_id,
                                   [{"product_id": product_id, "quantity": quantity}])
        if status == "committed":
            catalog.commit_reservation(f"state-{uuid.uuid4().hex}", order_id)
        elif status == "released":
            catalog.release_reservation(f"state-{uuid.uuid4().hex}", order_id)
        elif status != "held":
            raise ValueError(f"no reservation status {status!r}")

    def no_reservation(self, order_id: str) -> None:
        try:
            self.service("catalog").get_reservation(order_id)
        except NotFound:
            return
        raise AssertionError(f"order {order_id} has a reservation")


class FakeCatalog(InMemoryCatalog):
    """The cart's in-memory catalog fake (nothing to close)."""

    def close(self) -> None:
        return None


class CartStates(ProviderStates):
    """The cart, with an in-memory catalog behind it (the cart's own dependency is not
    what the orders→cart pact verifies)."""

    name = "cart"
    metadata = cart_store.metadata

    def create_app(self, verifier: TokenVerifier) -> connexion.FlaskApp:
        self.catalog = FakeCatalog()
        return cart_app.create_app(db=self.db, verifier=verifier, catalog=self.catalog)

    def reset(self) -> None:
        super().reset()
        self.catalog.products.clear()
        self.catalog.stock.clear()

    def handlers(self) -> dict[str, Handler]:
        return {"{user_id} has {quantity} of product {product_id} in the cart": self.cart}

    def cart(self, user_id: str, quantity: int, product_id: int, sku: str, price: int,
             currency: str) -> None:
        self.catalog.put(product_id, sku=sku, name="Espresso beans 1 kg", price=price,
                         currency=currency, available=100)
        self.service("cart").add_item(user_id, product_id, quantity)


class PaymentsStates(ProviderStates):
    name = "payments"
    metadata = payments_store.metadata

    def create_app(self, verifier: TokenVerifier) -> connexion.FlaskApp:
        return payments_app.create_app(db=self.db, verifier=verifier,
                                       provider=SimulatedProvider())

    def handlers(self) -> dict[str, Handler]:
        return {
            "payment {payment_id} of {amount} {currency} is authorized for order {order_id}":
                self.payment,
            "payment {payment_id} of {amount} {currency} is captured for order {order_id}":
                self.captured,
            "payment {payment_id} does not exist": self.no_payment,
            "the payment provider {verdict} {method}": self.provider_verdict,
        }

    def payment(self, payment_id: str, amount: int, currency: str, order_id: str,
                customer_id: str, *, captured: bool = False) -> None:
        # Through the store: the payment id is the consumer's (the service would draw one).
        status = (payments_domain.PaymentStatus.CAPTURED if captured
                  else payments_domain.PaymentStatus.AUTHORIZED)
        with self.service("payments").uow.write() as repo:
            repo.add(payments_domain.Payment(
                id=payment_id, order_id=order_id, customer_id=customer_id, amount=amount,
                currency=currency, status=status, captured_amount=amount if captured else 0,
                created_by="orders", provider="simulated",
                provider_reference=f"sim_{uuid.uuid4().hex}",
                method=payments_domain.MethodSummary(kind="token", token="tok_visa")))

    def captured(self, **payment: Any) -> None:
        self.payment(**payment, captured=True)

    @staticmethod
    def provider_verdict(verdict: str, method: str) -> None:
        # The simulated provider decides by the method (services/payments/clients.py).
        declines = method in DECLINE_TOKENS
        if declines != (verdict == "declines"):
            raise AssertionError(f"the simulated provider does not {verdict[:-1]} {method}")

    def no_payment(self, payment_id: str) -> None:
        with self.service("payments").uow.read() as repo:
            if repo.get(payment_id) is not None:
                raise AssertionError(f"payment {payment_id} exists")


class ExchangeStates(ProviderStates):
    """Exchange on its default source, the ``base_rates`` table of its own database; the
    cache is emptied with the tables, so each interaction asks the table again."""

    name = "exchange"
    metadata = exchange_store.metadata

    def create_app(self, verifier: TokenVerifier) -> connexion.FlaskApp:
        self.cache = TTLCache()
        return exchange_app.create_app(db=self.db, verifier=verifier,
                                       source=TableRateSource(self.db), cache=self.cache)

    def reset(self) -> None:
        super().reset()
        self.cache.clear()

    def handlers(self) -> dict[str, Handler]:
        return {
            "1 {base} buys {rate} {currency}": self.rate,
            "1 {base} buys {rate} {currency} and no rate of {unknown} is known":
                self.rate_without,
            "no exchange rate was ever known": self.no_rates,
        }

    def rate(self, base: str, rate: str, currency: str) -> None:
        # Through the store, as services.exchange.seed fills the table (no use case does).
        with self.db.session() as session:
            repo = exchange_store.SqlRatesRepository(session)
            repo.put_base_rate(base, base, Decimal(1))
            repo.put_base_rate(currency, base, Decimal(rate))

    def rate_without(self, unknown: str, **rate: str) -> None:
        self.rate(**rate)
        try:
            self.service("exchange").rate(unknown, rate["base"])
        except NotFound:
            return
        raise AssertionError(f"exchange knows a rate of {unknown}")

    def no_rates(self) -> None:
        try:
            self.service("exchange").rate("USD", "EUR")
        except ServiceUnavailable as exc:
            if exc.kind == "no-exchange-rates":
                return
            raise
        raise AssertionError("exchange knows a rate")


PROVIDERS: dict[str, type[ProviderStates]] = {
    states.name: states for states in (CatalogStates, CartStates, PaymentsStates,
                                       ExchangeStates)
}
"""Every provider that can be verified, by component name."""
