"""Request headers tests send: a bearer token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from charter.testing import TokenFactory


def bearer(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``."""
    return {"Authorization": f"Bearer {token}"}


def headers_factory(tokens: TokenFactory, scope: str, sub: str = "alice",
                    **defaults: Any) -> Callable[..., dict[str, str]]:
    """``make(sub=…, scope=…, **claims)`` → bearer headers of a token from ``tokens``.

    ``scope`` and ``sub`` are the defaults of ``make``; ``defaults`` are default claims
    (e.g. ``role="customer"``), each overridden by a claim of the same name
    (``make(role=None)``: no role claim).
    """

    def make(sub: str = sub, scope: str = scope, **claims: Any) -> dict[str, str]:
        return bearer(tokens.token(sub=sub, scope=scope, **{**defaults, **claims}))

    return make
