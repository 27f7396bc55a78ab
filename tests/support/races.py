"""Run work in threads released at the same instant (races on real databases)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_threads(count: int, work: Callable[[int], Any], *, timeout: float = 120) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions.

    Each slot of the returned list holds what ``work(i)`` returned or the exception it
    raised, so a test can count winners and losers of a race.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # recorded for the test to inspect
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results
