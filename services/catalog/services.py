"""Catalog use cases: each runs in one unit of work and returns JSON-ready documents.

Reads go through the cache (cache-aside, versioned namespaces); every write invalidates
the namespaces it affects *after* its transaction committed. Versioned keys also close
the race where a slow reader stores a value it loaded before a write: it stores it under
the old version, which nobody reads any more.

Domain errors become problem responses here: short stock and forbidden state changes are
409, other business-rule failures 422, missing resources 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from charter.cache import Cache, TTLCache
from charter.db import Database
from charter.idempotency import Idempotency, Outcome, canonical_json
from charter.problems import Conflict, NotFound, Problem, Unprocessable

from . import domain
from .store import (
    CatalogRepository,
    CategoryRow,
    ProductFilter,
    ProductRow,
    ReservationRow,
    StockRow,
    begin_write,
    idempotency_keys,
    utcnow,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]


def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` (SQLite hands back naive datetimes: they are UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def category_doc(row: CategoryRow) -> Doc:
    return {
        "id": row.id,
        "slug": row.slug,
        "name": row.name,
        "description": row.description,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def product_doc(row: ProductRow) -> Doc:
    return {
        "id": row.id,
        "sku": row.sku,
        "name": row.name,
        "description": row.description,
        "category_id": row.category_id,
        "price": row.price,
        "currency": row.currency,
        "active": row.active,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def stock_doc(row: StockRow) -> Doc:
    return {
        "product_id": row.product_id,
        "on_hand": row.on_hand,
        "reserved": row.reserved,
        "available": row.on_hand - row.reserved,
        "updated_at": iso(row.updated_at),
    }


def reservation_doc(row: ReservationRow, lines: list[domain.ReservationLine]) -> Doc:
    return {
        "order_id": row.order_id,
        "status": row.status,
        "items": [{"product_id": ln.product_id, "quantity": ln.quantity} for ln in lines],
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def page_doc(items: list[Doc], page: int, page_size: int, total: int) -> Doc:
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def as_problem(exc: domain.DomainError) -> Problem:
    """The HTTP answer for a refused business rule."""
    if isinstance(exc, domain.InsufficientStock):
        return Conflict(
            str(exc),
            title="Insufficient stock",
            product_id=exc.shortages[0].product_id,
            shortages=[
                {"product_id": s.product_id, "requested": s.requested, "available": s.available}
                for s in exc.shortages
            ],
        )
    if isinstance(exc, domain.InvalidTransition):
        return Conflict(str(exc), title="Invalid reservation state")
    return Unprocessable(str(exc))


@contextmanager
def business_rules() -> Iterator[None]:
    try:
        yield
    except domain.DomainError as exc:
        raise as_problem(exc) from exc


class CatalogService:
    """The catalog's use cases over one database and one cache."""

    SCOPE = "catalog"

    def __init__(self, db: Database, cache: Cache | None = None) -> None:
        self.db = db
        self.cache = cache if cache is not None else TTLCache()
        self.idempotency = Idempotency(idempotency_keys)
        self._categories = self.cache.namespace("categories")
        self._products = self.cache.namespace("products")
        self._product_lists = self.cache.namespace("product-lists")

    # units of work -----------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[CatalogRepository]:
        with self.db.session() as session:
            yield CatalogRepository(session)

    @contextmanager
    def _write(self) -> Iterator[CatalogRepository]:
        """A write transaction; a unique-constraint race (lost to a concurrent writer) is 409."""
        try:
            with self.db.session() as session:
                begin_write(session)
                yield CatalogRepository(session)
        except IntegrityError as exc:
            raise Conflict("the change conflicts with existing data (a concurrent write?)") from exc

    def _invalidate(self, *, categories: bool = False, products: bool = False,
                    lists: bool = True) -> None:
        if categories:
            self._categories.invalidate()
        if products:
            self._products.invalidate()
        if lists:
            self._product_lists.invalidate()

    # categories --------------------------------------------------------------------
    def list_categories(self, page: int = 1, page_size: int = 20) -> Doc:
        def load() -> Doc:
            with self._read() as repo:
                rows, total = repo.categories((page - 1) * page_size, page_size)
                return page_doc([category_doc(r) for r in rows], page, page_size, total)

        return self._categories.get_or_load(f"list:{page}:{page_size}", load)

    def get_category(self, category_id: int) -> Doc:
        def load() -> Doc:
            with self._read() as repo:
                return category_doc(self._category(repo, category_id))

        return self._categories.get_or_load(f"id:{category_id}", load)

    def create_category(self, data: Mapping[str, Any]) -> Doc:
        with self._write() as repo:
            if repo.category_by_slug(data["slug"]) is not None:
                raise Conflict(f"a category with slug {data['slug']!r} already exists")
            row = repo.add_category(data["slug"], data["name"], data.get("description", ""))
            doc = category_doc(row)
        self._invalidate(categories=True, lists=False)
        return doc

    def update_category(self, category_id: int, changes: Mapping[str, Any]) -> Doc:
        with self._write() as repo:
            row = self._category(repo, category_id)
            slug = changes.get("slug")
            if slug is not None and slug != row.slug:
                other = repo.category_by_slug(slug)
                if other is not None:
                    raise Conflict(f"a category with slug {slug!r} already exists")
            for name in ("slug", "name", "description"):
                if name in changes:
                    setattr(row, name, changes[name])
            row.updated_at = utcnow()
            repo.session.flush()
            doc = category_doc(row)
        self._invalidate(categories=True, lists=False)
        return doc

    def delete_category(self, category_id: int) -> None:
        with self._write() as repo:
            row = self._category(repo, category_id)
            if repo.category_has_products(category_id):
                raise Conflict(f"category {category_id} still has products")
            repo.delete_category(row)
        self._invalidate(categories=True)

    # products ----------------------------------------------------------------------
    def list_products(self, flt: ProductFilter, page: int = 1, page_size: int = 20) -> Doc:
        def load() -> Doc:
            with self._read() as repo:
                rows, total = repo.products(flt, (page - 1) * page_size, page_size)
                return page_doc([product_doc(r) for r in rows], page, page_size, total)

        key = canonical_json({"f": vars(flt), "p": page, "s": page_size})
        return self._product_lists.get_or_load(key, load)

    def get_product(self, product_id: int) -> Doc:
        def load() -> Doc:
            with self._read() as repo:
                return product_doc(self._product(repo, product_id))

        return self._products.get_or_load(f"id:{product_id}", load)

    def create_product(self, data: Mapping[str, Any]) -> Doc:
        with business_rules():
            price = domain.Price(data["price"], data["currency"])
        with self._write() as repo:
            if repo.product_by_sku(data["sku"]) is not None:
                raise Conflict(f"a product with sku {data['sku']!r} already exists",
                               title="Duplicate SKU")
            if repo.category(data["category_id"]) is None:
                raise Unprocessable(f"category {data['category_id']} does not exist")
            row = repo.add_product(
                sku=data["sku"],
                name=data["name"],
                description=data.get("description", ""),
                category_id=data["category_id"],
                price=price,
                active=data.get("active", True),
            )
            doc = product_doc(row)
        self._invalidate(products=True)
        return doc

    def update_product(self, product_id: int, changes: Mapping[str, Any]) -> Doc:
        with self._write() as repo:
            row = self._product(repo, product_id)
            sku = changes.get("sku")
            if sku is not None and sku != row.sku and repo.product_by_sku(sku) is not None:
                raise Conflict(f"a product with sku {sku!r} already exists",
                               title="Duplicate SKU")
            category_id = changes.get("category_id")
            if category_id is not None and repo.category(category_id) is None:
                raise Unprocessable(f"category {category_id} does not exist")
            with business_rules():
                domain.Price(changes.get("price", row.price),
                             changes.get("currency", row.currency))
            for name in ("sku", "name", "description", "category_id", "price", "currency",
                         "active"):
                if name in changes:
                    setattr(row, name, changes[name])
            row.updated_at = utcnow()
            repo.session.flush()
            doc = product_doc(row)
        self._invalidate(products=True)
        return doc

    def delete_product(self, product_id: int) -> None:
        with self._write() as repo:
            row = self._product(repo, product_id)
            stock = repo.lock_stock([product_id]).get(product_id)
            if stock is not None and stock.reserved > 0:
                raise Conflict(
                    f"product {product_id} has {stock.reserved} reserved units; "
                    "commit or release the reservations first"
                )
            repo.delete_product(row)
        self._invalidate(products=True)

    # stock -------------------------------------------------------------------------
    def get_stock(self, product_id: int) -> Doc:
        with self._read() as repo:
            return stock_doc(self._stock(repo, product_id))

    def set_stock(self, product_id: int, on_hand: int) -> Doc:
        return self._change_stock(product_id, lambda level: level.set_on_hand(on_hand))

    def adjust_stock(self, product_id: int, delta: int, reason: str | None = None) -> Doc:
        doc = self._change_stock(product_id, lambda level: level.adjust(delta))
        log.info("stock of product %s adjusted by %+d (%s)", product_id, delta, reason or "-")
        return doc

    def _change_stock(self, product_id: int,
                      change: Callable[[domain.StockLevel], None]) -> Doc:
        with self._write() as repo:
            self._product(repo, product_id)
            row = repo.lock_stock([product_id]).get(product_id)
            if row is None:
                raise NotFound(f"product {product_id} has no stock record")
            level = repo.to_level(row)
            with business_rules():
                change(level)
            repo.apply_level(row, level)
            repo.session.flush()
            doc = stock_doc(row)
        self._invalidate()
        return doc

    # reservations ------------------------------------------------------------------
    def get_reservation(self, order_id: str) -> Doc:
        with self._read() as repo:
            row = repo.reservation(order_id)
            if row is None:
                raise NotFound(f"no reservation for order {order_id!r}")
            return reservation_doc(row, repo.reservation_lines(order_id))

    def create_reservation(self, key: str, order_id: str,
                           items: Sequence[Mapping[str, Any]]) -> Outcome:
        """Hold every item for the order, or none (409 with the shortages)."""
        request = {"order_id": order_id, "items": [dict(i) for i in items]}

        def action(session: Any) -> tuple[int, Doc]:
            repo = CatalogRepository(session)
            with business_rules():
                lines = domain.normalise_lines((i["product_id"], i["quantity"]) for i in items)
            if repo.reservation(order_id) is not None:
                raise Conflict(f"order {order_id!r} already has a reservation",
                               title="Reservation exists")
            wanted = [ln.product_id for ln in lines]
            missing = sorted(set(wanted) - repo.active_product_ids(wanted))
            if missing:
                raise Unprocessable(
                    f"product {missing[0]} does not exist or is not for sale",
                    title="Unknown product",
                    product_id=missing[0],
                    product_ids=missing,
                )
            rows = repo.lock_stock(wanted)
            levels = {pid: repo.to_level(row) for pid, row in rows.items()}
            reservation = domain.Reservation(order_id, lines)
            with business_rules():
                domain.reserve_all(levels, lines)
            for pid, row in rows.items():
                repo.apply_level(row, levels[pid])
            res_row = repo.add_reservation(reservation)
            return 201, reservation_doc(res_row, lines)

        return self._idempotent("create_reservation", key, request, action)

    def commit_reservation(self, key: str, order_id: str) -> Outcome:
        """held → committed: the units leave on_hand and reserved."""
        return self._transition(key, order_id, commit=True)

    def release_reservation(self, key: str, order_id: str) -> Outcome:
        """held → released: the units become available again."""
        return self._transition(key, order_id, commit=False)

    def _transition(self, key: str, order_id: str, *, commit: bool) -> Outcome:
        operation = "commit_reservation" if commit else "release_reservation"

        def action(session: Any) -> tuple[int, Doc]:
            repo = CatalogRepository(session)
            row = repo.reservation(order_id, lock=True)
            if row is None:
                raise NotFound(f"no reservation for order {order_id!r}")
            lines = repo.reservation_lines(order_id)
            reservation = domain.Reservation(order_id, lines, domain.ReservationStatus(row.status))
            with business_rules():
                changed = reservation.commit() if commit else reservation.release()
                if changed:
                    rows = repo.lock_stock(ln.product_id for ln in lines)
                    levels = {pid: repo.to_level(r) for pid, r in rows.items()}
                    if len(levels) != len(lines):
                        raise domain.StockBelowReserved(
                            f"a product of order {order_id!r} no longer has a stock record"
                        )
                    if commit:
                        domain.commit_all(levels, lines)
                    else:
                        domain.release_all(levels, lines)
                    for pid, r in rows.items():
                        repo.apply_level(r, levels[pid])
                    row.status = str(reservation.status)
                    row.updated_at = utcnow()
                    session.flush()
            return 200, reservation_doc(row, lines)

        return self._idempotent(operation, key, {"order_id": order_id}, action)

    def _idempotent(self, operation: str, key: str, request: Any, action: Any) -> Outcome:
        try:
            outcome = self.idempotency.run(
                self.db.session,
                scope=f"{self.SCOPE}.{operation}",
                key=key,
                request=request,
                action=action,
                begin=begin_write,
            )
        except IntegrityError as exc:  # pragma: no cover - safety net (constraints)
            raise Conflict("the change conflicts with a concurrent one; retry") from exc
        if not outcome.replayed:
            self._invalidate()
        return outcome

    # lookups -------------------------------------------------------------------------
    @staticmethod
    def _category(repo: CatalogRepository, category_id: int) -> CategoryRow:
        row = repo.category(category_id)
        if row is None:
            raise NotFound(f"category {category_id} does not exist")
        return row

    @staticmethod
    def _product(repo: CatalogRepository, product_id: int) -> ProductRow:
        row = repo.product(product_id)
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        return row

    @staticmethod
    def _stock(repo: CatalogRepository, product_id: int) -> StockRow:
        CatalogService._product(repo, product_id)
        row = repo.stock(product_id)
        if row is None:
            raise NotFound(f"product {product_id} has no stock record")
        return row
