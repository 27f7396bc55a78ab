"""The HTTP adapter of catalog's published v1 API, through :class:`charter.http.HttpClient`.

Reads (``GET /v1/products/{id}``, ``…/stock``) use the ``read_token`` source (scope
``catalog:read``); reservations (``POST /v1/reservations``, ``…/{order_id}/commit``,
``…/{order_id}/release``) use ``reserve_token`` (scope ``catalog:reserve``) and carry an
``Idempotency-Key``, so they are retried like idempotent calls.

"Not found" and business refusals are answers (``None``, :class:`ReserveResult`,
:class:`TransitionResult`); anything that prevents an answer raises
:class:`CatalogUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from charter.http import DEFAULT_TIMEOUT, HttpClient, TokenSource
from charter.problem_types import slug_of
from charter.problems import ServiceUnavailable

from .models import (
    CatalogUnavailable,
    Product,
    ReserveOutcome,
    ReserveResult,
    Stock,
    TransitionOutcome,
    TransitionResult,
)

log = logging.getLogger(__name__)

JSON_HEADERS = {"Accept": "application/json"}


class HttpCatalogClient:
    """A typed client of the catalog API (one connection pool for reads and reservations).

    ``reserve_token`` is needed only for reservations (a client that only reads, like the
    cart, has no such token and cannot reserve).
    """

    def __init__(
        self,
        base_url: str,
        read_token: TokenSource,
        reserve_token: TokenSource | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 1,
        http: HttpClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or HttpClient(
            self.base_url, name="catalog", timeout=timeout, retries=retries, token=read_token
        )
        self.writes: HttpClient | None = None
        if reserve_token is not None:
            self.writes = HttpClient(
                self.base_url, name="catalog", timeout=self.http.timeout, retries=retries,
                token=reserve_token, client=self.http.client,
            )

    # -- plumbing --------------------------------------------------------------------------
    @staticmethod
    def _call(http: HttpClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return http.request(method, path, **kwargs)
        except ServiceUnavailable as exc:
            raise CatalogUnavailable(str(exc) or "the catalog is unavailable") from exc

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise CatalogUnavailable("the catalog sent an invalid answer") from exc

    @staticmethod
    def _unexpected(response: httpx.Response, action: str) -> CatalogUnavailable:
        # 400/401/403 mean our request or our token is wrong: an error to look at.
        level = logging.ERROR if response.status_code in (400, 401, 403) else logging.WARNING
        log.log(level, "catalog: %s answered %s", action, response.status_code)
        return CatalogUnavailable(f"the catalog answered {response.status_code}")

    def _get(self, path: str, action: str) -> dict[str, Any] | None:
        response = self._call(self.http, "GET", path, headers=JSON_HEADERS)
        if response.status_code == 404:  # one kind only (not-found): the status decides
            return None
        if response.status_code != 200:
            raise self._unexpected(response, action)
        body = self._json(response)
        if not isinstance(body, dict):
            raise CatalogUnavailable("the catalog sent an invalid answer")
        return body

    def _writer(self) -> HttpClient:
        if self.writes is None:
            raise RuntimeError("this catalog client has no reservation token (reserve_token)")
        return self.writes

    def _post(self, path: str, key: str, body: Any = None) -> httpx.Response:
        kwargs: dict[str, Any] = {
            "headers": {**JSON_HEADERS, "Idempotency-Key": key},
            "retry": True,  # keyed: a retry cannot act twice
        }
        if body is not None:
            kwargs["json"] = body
        return self._call(self._writer(), "POST", path, **kwargs)

    # -- products ----------------------------------------------------------------------------
    def get_product(self, product_id: int) -> Product | None:
        """The product, ``None`` if the catalog does not know it."""
        body = self._get(f"/v1/products/{int(product_id)}", "GET product")
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
        """The product's stock level, ``None`` if the catalog does not know it."""
        body = self._get(f"/v1/products/{int(product_id)}/stock", "GET stock")
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

    # -- reservations ------------------------------------------------------------------------
    def reserve(self, order_id: str, items: Sequence[tuple[int, int]], key: str) -> ReserveResult:
        """Hold every ``(product_id, quantity)`` for the order, or none."""
        body = {
            "order_id": order_id,
            "items": [{"product_id": pid, "quantity": qty} for pid, qty in items],
        }
        response = self._post("/v1/reservations", key, body)
        status = response.status_code
        if status in (200, 201):
            return ReserveResult(ReserveOutcome.HELD)
        # Decided on the problem type (charter.problem_types), never on the title.
        kind = slug_of(self._json(response)) if status in (409, 422) else None
        if kind in ("insufficient-stock", "reservation-exists"):
            return self._reserve_conflict(order_id, response, kind)
        if kind in ("unknown-product", "product-not-for-sale"):
            return self._reserve_refused(response)
        raise self._unexpected(response, f"reserve ({status} {kind or 'untyped'})")

    def _reserve_conflict(self, order_id: str, response: httpx.Response,
                          kind: str) -> ReserveResult:
        problem = self._json(response)
        problem = problem if isinstance(problem, dict) else {}
        shortages = problem.get("shortages")
        if kind == "insufficient-stock":
            if not isinstance(shortages, list) or not shortages:
                raise CatalogUnavailable("the catalog sent no shortages")
            try:
                short = [
                    {
                        "product_id": int(s["product_id"]),
                        "requested": int(s["requested"]),
                        "available": int(s["available"]),
                    }
                    for s in shortages
                ]
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogUnavailable("the catalog sent invalid shortages") from exc
            detail = str(problem.get("detail") or "insufficient stock")
            return ReserveResult(ReserveOutcome.SHORTAGE, detail, shortages=short)
        # reservation-exists: held under another key (e.g. an expired idempotency
        # record): read its state.
        return self._existing(order_id)

    def _reserve_refused(self, response: httpx.Response) -> ReserveResult:
        problem = self._json(response)
        problem = problem if isinstance(problem, dict) else {}
        ids = problem.get("product_ids") or (
            [problem["product_id"]] if "product_id" in problem else []
        )
        if not ids:  # a product refusal must name the product
            raise CatalogUnavailable("the catalog refused a product without naming it")
        try:
            product_ids = [int(i) for i in ids]
        except (TypeError, ValueError) as exc:
            raise CatalogUnavailable("the catalog sent invalid product ids") from exc
        detail = str(problem.get("detail") or "a product is not for sale")
        return ReserveResult(ReserveOutcome.REFUSED, detail, product_ids=product_ids)

    def _existing(self, order_id: str) -> ReserveResult:
        response = self._call(self._writer(), "GET", f"/v1/reservations/{order_id}",
                              headers=JSON_HEADERS)
        if response.status_code == 200:
            body = self._json(response)
            if isinstance(body, dict) and body.get("status") == "held":
                return ReserveResult(ReserveOutcome.HELD)
        raise self._unexpected(response, "read reservation")

    def _transition(self, order_id: str, key: str, action: str) -> TransitionResult:
        response = self._post(f"/v1/reservations/{order_id}/{action}", key)
        status = response.status_code
        if status == 200:
            return TransitionResult(TransitionOutcome.DONE)
        problem = self._json(response) if status in (404, 409) else None
        kind = slug_of(problem)  # decided on the problem type, never on the title
        if kind in ("request-in-progress", "concurrent-update"):
            raise CatalogUnavailable("the catalog is still handling the same request")
        if kind in ("not-found", "invalid-reservation-state"):
            detail = str(problem.get("detail", "")) if isinstance(problem, dict) else ""
            outcome = (TransitionOutcome.NOT_FOUND if kind == "not-found"
                       else TransitionOutcome.CONFLICT)
            return TransitionResult(outcome, detail)
        raise self._unexpected(response, f"{action} ({status} {kind or 'untyped'})")

    def commit(self, order_id: str, key: str) -> TransitionResult:
        """Commit the order's reservation (the stock leaves the shelf)."""
        return self._transition(order_id, key, "commit")

    def release(self, order_id: str, key: str) -> TransitionResult:
        """Release the order's reservation (the stock is available again)."""
        return self._transition(order_id, key, "release")

    def return_stock(self, order_id: str, key: str) -> TransitionResult:
        """Put a committed reservation back on hand (``POST …/return``)."""
        return self._transition(order_id, key, "return")

    def close(self) -> None:
        """Close the pooled connections (shared by reads and reservations)."""
        self.http.close()
