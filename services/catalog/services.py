"""Catalog use cases: each runs in one unit of work and returns domain objects.

The service depends only on ports: ``uow: UnitOfWork[CatalogRepository]``
(:mod:`charter.unit_of_work`, :mod:`.ports`) and a cache. Writes run in ``uow.write()``
(one transaction; the SQL adapter takes the write lock first on SQLite), reads in
``uow.read()``; a write that loses a constraint race (:class:`WriteConflict`) is 409. The
keyed reservation operations run once per Idempotency-Key through
:func:`charter.idempotency.run_once`, whose stored answer is the JSON snapshot of the
reservation (:data:`RESERVATION`), so a replay gives back the first answer exactly.

Reads go through the cache (cache-aside, versioned namespaces, JSON snapshots of the domain
objects); every write invalidates the namespaces it affects *after* its transaction
committed. Versioned keys also close the race where a slow reader stores a value it loaded
before a write: it stores it under the old version, which nobody reads any more.

Domain errors become problem responses here: short stock and forbidden state changes are
409, other business-rule failures 422, missing resources 404. Authorisation is by scope
only (checked by Connexion from the spec): the catalog has no customer-owned resources.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar

from prometheus_client import Counter

from charter.cache import Cache, Namespace, TTLCache
from charter.idempotency import Outcome, canonical_json
from charter.observability.families import CacheCounter
from charter.problems import Conflict, NotFound, Problem, Unprocessable
from charter.snapshots import JsonSnapshot
from charter.unit_of_work import UnitOfWork, WriteConflict
from charter.usecases import Page, Refusals, run_once_as

from . import domain
from .domain import Category, Product, ProductFilter, Reservation, ReservationLine, StockLevel
from .events import DEFAULT_LOW_STOCK_THRESHOLD, LOW_STOCK, levels_before, stock_events
from .ports import CatalogRepository

#: ``catalog.LowStock`` events written (a product's available units crossed down to the
#: threshold); the ``LowStock`` operational alert (deploy/prometheus/operational-alerts.yaml)
#: fires on its increase. Module-level: in multiprocess mode every worker's file is summed.
LOW_STOCK_EVENTS = Counter("charter_catalog_low_stock_events",
                           "catalog.LowStock events written (available units crossed down "
                           "to the low-stock threshold)", ["service"])
LOW_STOCK_EVENTS.labels("catalog")  # exported as 0 before the first crossing

log = logging.getLogger(__name__)

T = TypeVar("T")

CATEGORY = JsonSnapshot[Category](Category)
PRODUCT = JsonSnapshot[Product](Product)
CATEGORY_PAGE = JsonSnapshot[tuple[list[Category], int]](tuple[list[Category], int])
PRODUCT_PAGE = JsonSnapshot[tuple[list[Product], int]](tuple[list[Product], int])
RESERVATION = JsonSnapshot[Reservation](Reservation)
"""JSON forms of domain objects for the cache and the stored idempotent answers."""


def as_problem(exc: domain.DomainError) -> Problem:
    """The HTTP answer for a refused business rule."""
    if isinstance(exc, domain.InsufficientStock):
        return Conflict(
            str(exc),
            kind="insufficient-stock",
            product_id=exc.shortages[0].product_id,
            shortages=[
                {"product_id": s.product_id, "requested": s.requested, "available": s.available}
                for s in exc.shortages
            ],
        )
    if isinstance(exc, domain.InvalidTransition):
        return Conflict(str(exc), kind="invalid-reservation-state")
    return Unprocessable(str(exc))


business_rules = Refusals(domain.DomainError, as_problem)
"""``with business_rules():`` answers a refused business rule with its problem."""


class _Cached(Generic[T]):
    """A cache namespace holding JSON snapshots of one kind of domain object."""

    def __init__(self, namespace: Namespace, snapshot: JsonSnapshot[T]) -> None:
        self.namespace = namespace
        self.snapshot = snapshot
        self.reads = CacheCounter("catalog", namespace.name)

    def get_or_load(self, key: str, load: Callable[[], T]) -> T:
        """The cached snapshot, else ``load()`` cached; counted as a hit or a miss
        (``charter_cache_requests_total{cache=<namespace>}``)."""
        missed = False

        def loader() -> Any:
            nonlocal missed
            missed = True
            return self.snapshot.dump(load())

        try:
            data = self.namespace.get_or_load(key, loader)
        finally:  # a load that raised (not found) was a miss too
            self.reads.count(hit=not missed)
        return self.snapshot.load(data)

    def invalidate(self) -> None:
        self.namespace.invalidate()


class CatalogService:
    """The catalog's use cases over one unit of work and one cache.

    Every stock movement writes ``catalog.StockChanged`` (and ``catalog.LowStock`` when
    available units cross down to ``low_stock_threshold``) in its own transaction.
    """

    SCOPE = "catalog"

    def __init__(self, uow: UnitOfWork[CatalogRepository], cache: Cache | None = None, *,
                 low_stock_threshold: int = DEFAULT_LOW_STOCK_THRESHOLD) -> None:
        if low_stock_threshold < 0:
            raise ValueError("low_stock_threshold must be 0 or more")
        self.uow = uow
        self.cache = cache if cache is not None else TTLCache()
        self.low_stock_threshold = low_stock_threshold
        # Snapshot namespaces (named apart from the earlier whole-document ones).
        self._categories = _Cached(self.cache.namespace("category"), CATEGORY)
        self._category_pages = _Cached(self.cache.namespace("category-page"), CATEGORY_PAGE)
        self._products = _Cached(self.cache.namespace("product"), PRODUCT)
        self._product_pages = _Cached(self.cache.namespace("product-page"), PRODUCT_PAGE)

    # units of work -----------------------------------------------------------------
    def _read(self) -> AbstractContextManager[CatalogRepository]:
        return self.uow.read()

    @contextmanager
    def _write(self) -> Iterator[CatalogRepository]:
        """A write transaction; a unique-constraint race (lost to a concurrent writer) is 409."""
        try:
            with self.uow.write() as repo:
                yield repo
        except WriteConflict as exc:
            raise Conflict("the change conflicts with existing data (a concurrent write?)") from exc

    def _invalidate(self, *, categories: bool = False, products: bool = False,
                    lists: bool = True) -> None:
        if categories:
            self._categories.invalidate()
            self._category_pages.invalidate()
        if products:
            self._products.invalidate()
        if lists:
            self._product_pages.invalidate()

    # categories --------------------------------------------------------------------
    def list_categories(self, page: int = 1, page_size: int = 20) -> Page[Category]:
        def load() -> tuple[list[Category], int]:
            with self._read() as repo:
                return repo.categories(Page.offset(page, page_size), page_size)

        items, total = self._category_pages.get_or_load(f"{page}:{page_size}", load)
        return Page(items, page, page_size, total)

    def get_category(self, category_id: int) -> Category:
        def load() -> Category:
            with self._read() as repo:
                return _found(repo.category(category_id), f"category {category_id} does not exist")

        return self._categories.get_or_load(str(category_id), load)

    def create_category(self, slug: str, name: str, description: str = "") -> Category:
        with self._write() as repo:
            if repo.slug_taken(slug):
                raise Conflict(f"a category with slug {slug!r} already exists")
            category = repo.add_category(slug, name, description)
        self._invalidate(categories=True, lists=False)
        return category

    def update_category(self, category_id: int, *, slug: str | None = None,
                        name: str | None = None, description: str | None = None) -> Category:
        with self._write() as repo:
            category = _found(repo.category(category_id), f"category {category_id} does not exist")
            if slug is not None and repo.slug_taken(slug, other_than=category_id):
                raise Conflict(f"a category with slug {slug!r} already exists")
            category.change(slug=slug, name=name, description=description)
            repo.save_category(category)
        self._invalidate(categories=True, lists=False)
        return category

    def delete_category(self, category_id: int) -> None:
        with self._write() as repo:
            _found(repo.category(category_id), f"category {category_id} does not exist")
            if repo.category_has_products(category_id):
                raise Conflict(f"category {category_id} still has products")
            repo.delete_category(category_id)
        self._invalidate(categories=True)

    # products ----------------------------------------------------------------------
    def list_products(self, flt: ProductFilter, page: int = 1,
                      page_size: int = 20) -> Page[Product]:
        def load() -> tuple[list[Product], int]:
            with self._read() as repo:
                return repo.products(flt, Page.offset(page, page_size), page_size)

        key = canonical_json({"f": vars(flt), "p": page, "s": page_size})
        items, total = self._product_pages.get_or_load(key, load)
        return Page(items, page, page_size, total)

    def get_product(self, product_id: int) -> Product:
        def load() -> Product:
            with self._read() as repo:
                return _found(repo.product(product_id), f"product {product_id} does not exist")

        return self._products.get_or_load(str(product_id), load)

    def create_product(self, sku: str, name: str, category_id: int, price: int,
                       currency: str, description: str = "", active: bool = True) -> Product:
        with business_rules():
            checked = domain.Price(price, currency)
        with self._write() as repo:
            if repo.sku_taken(sku):
                raise Conflict(f"a product with sku {sku!r} already exists",
                               kind="duplicate-sku")
            if not repo.category_exists(category_id):
                raise Unprocessable(f"category {category_id} does not exist")
            product = repo.add_product(sku=sku, name=name, description=description,
                                       category_id=category_id, price=checked, active=active)
        self._invalidate(products=True)
        return product

    def update_product(self, product_id: int, **changes: Any) -> Product:
        """Change the given fields (``sku``, ``name``, ``description``, ``category_id``,
        ``price``, ``currency``, ``active``)."""
        with self._write() as repo:
            product = _found(repo.product(product_id), f"product {product_id} does not exist")
            sku = changes.get("sku")
            if sku is not None and repo.sku_taken(sku, other_than=product_id):
                raise Conflict(f"a product with sku {sku!r} already exists",
                               kind="duplicate-sku")
            category_id = changes.get("category_id")
            if category_id is not None and not repo.category_exists(category_id):
                raise Unprocessable(f"category {category_id} does not exist")
            with business_rules():
                product.change(**changes)
            repo.save_product(product)
        self._invalidate(products=True)
        return product

    def delete_product(self, product_id: int) -> None:
        with self._write() as repo:
            _found(repo.product(product_id), f"product {product_id} does not exist")
            level = repo.lock_stock([product_id]).get(product_id)
            if level is not None and level.reserved > 0:
                raise Conflict(
                    f"product {product_id} has {level.reserved} reserved units; "
                    "commit or release the reservations first"
                )
            repo.delete_product(product_id)
        self._invalidate(products=True)

    # stock -------------------------------------------------------------------------
    def get_stock(self, product_id: int) -> StockLevel:
        with self._read() as repo:
            if not repo.product_exists(product_id):
                raise NotFound(f"product {product_id} does not exist")
            return _found(repo.stock(product_id), f"product {product_id} has no stock record")

    def set_stock(self, product_id: int, on_hand: int) -> StockLevel:
        return self._change_stock(product_id, lambda level: level.set_on_hand(on_hand), "set")

    def adjust_stock(self, product_id: int, delta: int, reason: str | None = None) -> StockLevel:
        """Add ``delta`` units (negative: remove), published as ``adjust`` whatever the
        free-text ``reason`` says (a return is :meth:`return_reservation`); the text is
        logged, never published."""
        level = self._change_stock(product_id, lambda level: level.adjust(delta), "adjust")
        log.info("stock of product %s adjusted by %+d (%s)", product_id, delta, reason or "-")
        return level

    def _change_stock(self, product_id: int, change: Callable[[StockLevel], None],
                      reason: str) -> StockLevel:
        with self._write() as repo:
            if not repo.product_exists(product_id):
                raise NotFound(f"product {product_id} does not exist")
            level = _found(repo.lock_stock([product_id]).get(product_id),
                           f"product {product_id} has no stock record")
            before = levels_before([level])
            with business_rules():
                change(level)
            repo.save_stock([level])
            self._publish_movement(repo, before, [level], reason)
        self._invalidate()
        return level

    def _publish_movement(self, repo: CatalogRepository, before: Mapping[int, tuple[int, int]],
                          after: Iterable[StockLevel], reason: str) -> None:
        """StockChanged (and LowStock on a crossing) in the movement's transaction."""
        events = stock_events(before, after, reason, self.low_stock_threshold)
        if events:
            repo.add_events(*events)
            lows = sum(1 for e in events if e.type == LOW_STOCK)
            if lows:
                LOW_STOCK_EVENTS.labels("catalog").inc(lows)

    # reservations ------------------------------------------------------------------
    def get_reservation(self, order_id: str) -> Reservation:
        with self._read() as repo:
            return _found(repo.reservation(order_id), f"no reservation for order {order_id!r}")

    def create_reservation(self, key: str, order_id: str,
                           items: Sequence[Mapping[str, Any]]) -> Outcome:
        """Hold every item for the order, or none (409 with the shortages).

        The outcome's body is the :class:`Reservation` (the first answer on a replay).
        """
        request = {"order_id": order_id, "items": [dict(i) for i in items]}

        def action(repo: CatalogRepository) -> tuple[int, Reservation]:
            with business_rules():
                lines = domain.normalise_lines((i["product_id"], i["quantity"]) for i in items)
            if repo.reservation(order_id) is not None:
                raise Conflict(f"order {order_id!r} already has a reservation",
                               kind="reservation-exists")
            wanted = [ln.product_id for ln in lines]
            missing = sorted(set(wanted) - repo.active_product_ids(wanted))
            if missing:
                raise Unprocessable(
                    f"product {missing[0]} does not exist or is not for sale",
                    kind="unknown-product",
                    product_id=missing[0],
                    product_ids=missing,
                )
            levels = repo.lock_stock(wanted)
            before = levels_before(levels.values())
            with business_rules():
                domain.reserve_all(levels, lines)
            repo.save_stock(levels.values())
            self._publish_movement(repo, before, levels.values(), "reserve")
            reservation = Reservation(order_id, lines)
            repo.add_reservation(reservation)
            return 201, reservation

        return self._idempotent("create_reservation", key, request, action)

    def commit_reservation(self, key: str, order_id: str) -> Outcome:
        """held → committed: the units leave on_hand and reserved."""
        return self._transition(key, order_id, "commit")

    def release_reservation(self, key: str, order_id: str) -> Outcome:
        """held → released: the units become available again."""
        return self._transition(key, order_id, "release")

    def return_reservation(self, key: str, order_id: str) -> Outcome:
        """committed → returned: the units go back on hand (a cancel or refund after the
        commit). Returning a returned reservation changes nothing; a held or released one
        is 409 ``invalid-reservation-state``."""
        return self._transition(key, order_id, "return")

    def _transition(self, key: str, order_id: str, verb: str) -> Outcome:
        """Move the reservation and its stock (``_TRANSITIONS[verb]``) once per key; the
        reservation row is locked first, so concurrent moves of one order serialise."""
        move, apply = _TRANSITIONS[verb]

        def action(repo: CatalogRepository) -> tuple[int, Reservation]:
            reservation = _found(repo.reservation(order_id, lock=True),
                                 f"no reservation for order {order_id!r}")
            with business_rules():
                changed = move(reservation)
                if changed:
                    lines = reservation.lines
                    levels = repo.lock_stock(ln.product_id for ln in lines)
                    if len(levels) != len(lines):
                        raise domain.StockBelowReserved(
                            f"a product of order {order_id!r} no longer has a stock record"
                        )
                    before = levels_before(levels.values())
                    apply(levels, lines)
                    repo.save_stock(levels.values())
                    repo.save_reservation(reservation)
                    self._publish_movement(repo, before, levels.values(), verb)
            return 200, reservation

        return self._idempotent(f"{verb}_reservation", key, {"order_id": order_id}, action)

    def _idempotent(self, operation: str, key: str, request: Any,
                    action: Callable[[CatalogRepository], tuple[int, Reservation]]) -> Outcome:
        """Run ``action`` once per key in one write transaction; the body is a Reservation."""
        outcome = run_once_as(self.uow, RESERVATION, scope=f"{self.SCOPE}.{operation}",
                              key=key, request=request, action=action)
        if not outcome.replayed:
            self._invalidate()
        return outcome


_StockMove = Callable[[Mapping[int, StockLevel], list[ReservationLine]], None]
_TRANSITIONS: dict[str, tuple[Callable[[Reservation], bool], _StockMove]] = {
    "commit": (Reservation.commit, domain.commit_all),
    "release": (Reservation.release, domain.release_all),
    "return": (Reservation.return_stock, domain.return_all),
}
"""verb → (the reservation's move, the stock movement); the verb is also the
``StockChanged`` reason and names the idempotency scope (``catalog.<verb>_reservation``)."""


def _found(value: T | None, missing: str) -> T:
    """``value``, or 404 with the detail ``missing`` when there is none."""
    if value is None:
        raise NotFound(missing)
    return value
