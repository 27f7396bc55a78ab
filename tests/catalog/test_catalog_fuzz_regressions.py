"""Regressions of what Schemathesis found on the catalog (tests/fuzz): each answered 500.

A body that is not valid UTF-8 reached ``bytes.decode`` inside Connexion's JSON body
validator (fixed for every service in ``charter/connexion_fixes.py``); an integer query
parameter beyond 64 bits reached SQLite (``OverflowError``) — the spec now bounds it, so
Connexion refuses it before the handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.plugin import assert_problem

NOT_UTF8 = b'\xff\xfe{"slug": "a", "name": "b"}'


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/categories"),
    ("PUT", "/v1/products/{product}/stock"),
    ("PATCH", "/v1/products/{product}"),
])
def test_body_that_is_not_utf8_is_a_400_problem(
        client: Any, auth: Callable[..., dict[str, str]], seeded: dict[str, Any],
        method: str, path: str) -> None:
    url = path.format(product=seeded["product"]["id"])
    response = client.request(method, url, content=NOT_UTF8,
                              headers=auth(**{"Content-Type": "application/json"}))
    assert_problem(response, 400)


@pytest.mark.parametrize("param", ["category", "min_price", "max_price", "page", "page_size"])
def test_integer_query_beyond_64_bits_is_a_400_problem(
        client: Any, auth: Callable[..., dict[str, str]], param: str) -> None:
    response = client.get(f"/v1/products?{param}=10216083200142896504594497536",
                          headers=auth())
    assert_problem(response, 400)


def test_problem_detail_never_carries_control_characters(
        client: Any, auth: Callable[..., dict[str, str]]) -> None:
    """Connexion quotes unknown query parameter names in its 400 detail; Schemathesis sent
    names with control characters, which the shared Problem schema forbids (log and
    terminal injection). They are now written as ``\\xNN``."""
    response = client.get("/v1/categories?a%02b%1b=1", headers=auth())
    assert_problem(response, 400)
    detail = response.json()["detail"]
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", detail), detail
    assert "a\\x02b\\x1b" in detail


@pytest.mark.parametrize(("path", "status"), [
    ("/v1/reservations/a%0Ab", 400),  # the order id's pattern refuses it
    ("/v1/reservations/%0A", 400),
    ("/v1/products/1%0A", 404),  # not an integer id: no such resource
])
def test_line_break_in_a_path_parameter_is_a_4xx_problem(
        client: Any, auth: Callable[..., dict[str, str]], path: str, status: int) -> None:
    """Starlette's ``Mount`` of the API base path matched ``.*`` without DOTALL: a path with
    an encoded line break skipped Connexion's routing, Flask still found the handler, and
    it failed outside Connexion's operation context (500, in every service)."""
    response = client.get(path, headers=auth())
    assert_problem(response, status)
