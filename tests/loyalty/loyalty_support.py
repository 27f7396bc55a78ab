"""Helpers shared by the loyalty tests (importable: tests/loyalty is on sys.path)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from charter import migrations
from charter.db import Database
from services.loyalty.app import MIGRATIONS_DIR

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def migrated(url: str) -> Database:
    """A database at ``url`` brought to the newest loyalty revision."""
    migrations.upgrade("loyalty", MIGRATIONS_DIR, url)
    return Database(url)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results
