"""The checkout as a user does it, through the gateway: order (explicit items) → payment →
confirm, by ``users`` concurrent clients, every answer checked."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import httpx

from bench.stats import Result, percentile

DEMO_CARD = "4242424242424242"


class CheckoutFailed(RuntimeError):
    """One step answered something other than what the checkout expects."""


async def _call(http: httpx.AsyncClient, path: str, body: dict[str, Any], expect: int
                ) -> dict[str, Any]:
    response = await http.post(path, json=body,
                               headers={"Idempotency-Key": f"bench-{uuid.uuid4().hex}"})
    if response.status_code != expect:
        raise CheckoutFailed(f"POST {path}: {response.status_code} {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


async def checkout(http: httpx.AsyncClient, product_id: int) -> None:
    """One checkout of one unit of ``product_id``; raises :class:`CheckoutFailed`."""
    order = await _call(http, "/orders/v1/orders",
                        {"items": [{"product_id": product_id, "quantity": 1}]}, 201)
    payment = await _call(http, "/payments/v1/payments",
                          {"order_id": str(order["id"]), "amount": order["total"],
                           "currency": order["currency"], "card_number": DEMO_CARD}, 201)
    done = await _call(http, f"/orders/v1/orders/{order['id']}/confirm",
                       {"payment_id": payment["id"]}, 200)
    if done.get("status") != "confirmed":
        raise CheckoutFailed(f"order {order['id']} ended {done.get('status')!r}, not confirmed")


async def _run(gateway: str, token: str, products: list[int], users: int, total: int
               ) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    ids = itertools.cycle(products)
    remaining = itertools.count()
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=gateway, timeout=30, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        async def user() -> None:
            while next(remaining) < total:
                began = time.perf_counter()
                try:
                    await checkout(http, next(ids))
                except (CheckoutFailed, httpx.HTTPError, KeyError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        return latencies, errors, time.perf_counter() - began


def run(gateway: str, token: str, products: list[int], users: int = 20, total: int = 200
        ) -> tuple[Result, list[str]]:
    """``total`` checkouts by ``users`` concurrent clients; the figure and the errors."""
    latencies, errors, seconds = asyncio.run(_run(gateway, token, products, users, total))
    latencies.sort()
    result = Result(name="checkout", connections=users, requests=len(latencies),
                    seconds=seconds, rps=len(latencies) / seconds if seconds else 0.0,
                    p50_ms=percentile(latencies, 0.5) * 1000,
                    p99_ms=percentile(latencies, 0.99) * 1000, errors=len(errors))
    return result, errors
