"""The v2 checkout as a client does it, through the gateway: ``POST /orders/v2/orders``
(explicit items, a payment token, an ``Idempotency-Key``) answers 202 at once; the client
follows ``Location`` until the order's ``status`` is final. One checkout's latency is
POST → the first answer showing ``confirmed`` or ``cancelled``; every answer is checked.

Polling is hand-written (``asyncio.sleep`` between GETs, a deadline per checkout): the API
offers no push channel, and a retry library adds nothing to a fixed-interval loop. The
interval bounds the figure's resolution (a checkout is seen final at most one interval
plus one GET after it became final) and adds read load while the checkouts run.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.stats import Result, percentile

PLACE = "/orders/v2/orders"
TERMINAL = frozenset({"confirmed", "cancelled"})
PAYMENT_METHOD = {"type": "token", "token": "tok_visa"}
POLL_INTERVAL = 0.05  # seconds between two reads of a pending order (see bench/README.md)
WAIT = 5  # seconds of ``Prefer: wait`` the waiting client asks for (the service's cap)
TIMEOUT = 30.0  # seconds from POST to a final status, per checkout


class CheckoutFailed(RuntimeError):
    """An answer was not what the v2 checkout promises, or the order never became final."""


@dataclass
class V2Run:
    """The figure (POST → final status; ``statuses`` counts final order statuses) and
    what went wrong."""

    result: Result
    errors: list[str] = field(default_factory=list)

    @property
    def cancelled(self) -> int:
        """How many checkouts ended ``cancelled`` (0 expected when stock is available)."""
        return self.result.statuses.get("cancelled", 0)


def _order(response: httpx.Response, expect: int, what: str) -> dict[str, Any]:
    if response.status_code != expect:
        raise CheckoutFailed(f"{what}: {response.status_code} {response.text[:300]}")
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) \
            or not isinstance(body.get("status"), str):
        raise CheckoutFailed(f"{what}: no order id and status in {str(body)[:300]}")
    return body


def order_url(response: httpx.Response, order_id: str) -> httpx.URL:
    """Where to read the placed order: its ``Location`` (relative to the request), which
    must name the order; :class:`CheckoutFailed` when it is missing or names another."""
    location = response.headers.get("location")
    if not location:
        raise CheckoutFailed(f"POST {PLACE}: 202 without Location (order {order_id})")
    url = response.request.url.join(location)
    if url.path.rstrip("/").rsplit("/", 1)[-1] != order_id \
            or url.host != response.request.url.host:
        raise CheckoutFailed(f"POST {PLACE}: Location {location!r} is not order {order_id}")
    return url


async def checkout(http: httpx.AsyncClient, product_id: int, *,
                   poll_interval: float = POLL_INTERVAL, timeout: float = TIMEOUT,
                   wait: int = 0) -> str:
    """One v2 checkout of one unit of ``product_id``, followed to its final status (which
    it returns); raises :class:`CheckoutFailed` on any unexpected answer or on timeout.

    ``wait`` > 0 sends ``Prefer: wait=<wait>``: the answer comes when the saga settled
    (or the time is up; then the client polls as without it)."""
    deadline = time.monotonic() + timeout
    headers = {"Idempotency-Key": f"bench-v2-{uuid.uuid4().hex}"}
    if wait:
        headers["Prefer"] = f"wait={wait}"
    response = await http.post(
        PLACE, json={"items": [{"product_id": product_id, "quantity": 1}],
                     "currency": "EUR", "payment_method": PAYMENT_METHOD},
        headers=headers)
    placed = _order(response, 202, f"POST {PLACE}")
    if wait and response.headers.get("preference-applied") != f"wait={wait}" \
            and placed["status"] not in TERMINAL:
        raise CheckoutFailed(f"POST {PLACE}: Prefer: wait={wait} neither applied nor final "
                             f"(Preference-Applied: {response.headers.get('preference-applied')})")
    order_id = str(placed["id"])
    url = order_url(response, order_id)
    status = str(placed["status"])
    while status not in TERMINAL:
        if time.monotonic() >= deadline:
            raise CheckoutFailed(f"order {order_id} still {status!r} after {timeout:g} s")
        await asyncio.sleep(poll_interval)
        read = _order(await http.get(url), 200, f"GET {url.path}")
        if read["id"] != order_id:
            raise CheckoutFailed(f"GET {url.path} answered order {read['id']}")
        status = str(read["status"])
    return status


async def _run(gateway: str, token: str, products: list[int], users: int, total: int,
               poll_interval: float, timeout: float, wait: int
               ) -> tuple[list[float], Counter[str], list[str], float]:
    latencies: list[float] = []
    finals: Counter[str] = Counter()
    errors: list[str] = []
    ids = itertools.cycle(products)
    remaining = itertools.count()
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=gateway, timeout=timeout, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        async def user() -> None:
            while next(remaining) < total:
                began = time.perf_counter()
                try:
                    status = await checkout(http, next(ids), poll_interval=poll_interval,
                                            timeout=timeout, wait=wait)
                except (CheckoutFailed, httpx.HTTPError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - began)
                finals[status] += 1

        began = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        return latencies, finals, errors, time.perf_counter() - began


def run(gateway: str, token: str, products: list[int], users: int = 20, total: int = 200,
        *, poll_interval: float = POLL_INTERVAL, timeout: float = TIMEOUT,
        wait: int = 0, name: str = "checkout_v2") -> V2Run:
    """``total`` v2 checkouts by ``users`` concurrent clients through ``gateway``, spread
    over ``products`` (one unit each); the figure, final statuses and errors. ``wait``:
    see :func:`checkout`."""
    if not products:
        raise ValueError("no product to check out")
    latencies, finals, errors, seconds = asyncio.run(
        _run(gateway, token, products, users, total, poll_interval, timeout, wait))
    latencies.sort()
    result = Result(name=name, connections=users, requests=len(latencies),
                    seconds=seconds, rps=len(latencies) / seconds if seconds else 0.0,
                    p50_ms=percentile(latencies, 0.5) * 1000,
                    p99_ms=percentile(latencies, 0.99) * 1000, errors=len(errors),
                    statuses=dict(finals))
    return V2Run(result, errors)
