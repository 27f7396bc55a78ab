"""Who runs the checkout saga's passes, and when (the steps themselves are in
:mod:`.checkout`).

:class:`InlineSagaRunner` runs a pass in the caller's thread (tests, and anything that
wants the answer to show the saga as far as it got). :class:`ThreadSagaRunner` is the
service's: a bounded pool of threads per process runs a pass as soon as an order is
placed, so ``POST /v2/orders`` answers ``202`` at once; a pass that leaves the saga
unsettled (a service unreachable) is run again after a growing delay, until it settles.
A crash loses only these timers: the recovery sweep (``resume_pending``, at start-up
and every ``ORDERS_RECOVERY_INTERVAL``) finds every unsettled checkout in the database.
"""

from __future__ import annotations

import contextvars
import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from .domain import Order

log = logging.getLogger(__name__)

Advance = Callable[[str], Order]
"""One pass of the saga for an order id; returns the order as it left it."""

RETRY_DELAYS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds before the 1st, 2nd, … re-run of an unsettled saga (then the last, repeated)."""


class SagaRunner(Protocol):
    """Runs saga passes for order ids."""

    def submit(self, order_id: str, advance: Advance) -> None:
        """Run a pass for ``order_id`` (now or soon); never raises for the pass."""
        ...

    def submit_and_wait(self, order_id: str, advance: Advance, timeout: float
                        ) -> tuple[bool, Order | None]:
        """:meth:`submit`, then wait up to ``timeout`` seconds for a pass that settles the
        saga. Whether it waited at all (a runner may refuse to), and the settling pass's
        order (``None``: not settled in time)."""
        ...


class InlineSagaRunner:
    """Runs the pass now, in the caller's thread (one pass: no re-runs)."""

    def submit(self, order_id: str, advance: Advance) -> None:
        self.submit_and_wait(order_id, advance, 0.0)

    def submit_and_wait(self, order_id: str, advance: Advance, timeout: float
                        ) -> tuple[bool, Order | None]:
        """Always waits (the pass runs here): its order, ``None`` if it failed."""
        try:
            return True, advance(order_id)
        except Exception:  # the pass failed: recovery runs it again
            log.exception("saga pass for order %s failed", order_id)
            return True, None


class _Waiter:
    """A caller waiting for an order's saga to settle."""

    __slots__ = ("done", "order")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.order: Order | None = None


class ThreadSagaRunner:
    """Passes on ``workers`` threads; unsettled sagas re-run after :data:`RETRY_DELAYS`.

    One order runs in one thread at a time in this process (a submit while it runs
    asks for one more pass afterwards). Two processes may still run the same saga at
    once (recovery in another worker): every step is keyed and every write checks the
    stream's version, so the second pass finds the work done.
    """

    def __init__(self, settled: Callable[[Order], bool], *, workers: int = 8,
                 delays: Sequence[float] = RETRY_DELAYS,
                 clock: Callable[[], float] = time.monotonic,
                 max_waiting: int = 16) -> None:
        self._settled = settled
        self._max_waiting = max_waiting
        self._waiters: dict[str, list[_Waiter]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="saga")
        self._delays = tuple(delays)
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, bool] = {}  # order id -> another pass wanted
        self._attempts: dict[str, int] = {}
        # (when, order id, advance, the context of the pass that scheduled it)
        self._timers: list[tuple[float, str, Advance, contextvars.Context]] = []
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        self._scheduler = threading.Thread(target=self._schedule_loop, name="saga-timers",
                                           daemon=True)
        self._scheduler.start()

    def submit(self, order_id: str, advance: Advance) -> None:
        with self._lock:
            if self._stopped:
                return
            if order_id in self._running:
                self._running[order_id] = True
                return
            self._running[order_id] = False
        context = contextvars.copy_context()  # the request's correlation id goes along
        self._pool.submit(context.run, self._run, order_id, advance)

    def submit_and_wait(self, order_id: str, advance: Advance, timeout: float
                        ) -> tuple[bool, Order | None]:
        """Waits on a pass of a pool thread; does not wait when ``max_waiting`` callers
        already do (each holds a request thread: the rest answer at once)."""
        waiter: _Waiter | None = None
        if timeout > 0:
            with self._lock:
                if not self._stopped and \
                        sum(map(len, self._waiters.values())) < self._max_waiting:
                    waiter = _Waiter()
                    self._waiters.setdefault(order_id, []).append(waiter)
        self.submit(order_id, advance)
        if waiter is None:
            return False, None
        waiter.done.wait(timeout)
        with self._lock:
            waiting = self._waiters.get(order_id, [])
            if waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[order_id]
        return True, waiter.order

    def waiting(self) -> int:
        """Callers waiting for a saga to settle in this process."""
        with self._lock:
            return sum(map(len, self._waiters.values()))

    def _run(self, order_id: str, advance: Advance) -> None:
        settled = False
        order: Order | None = None
        try:
            order = advance(order_id)
            settled = self._settled(order)
        except Exception:
            log.exception("saga pass for order %s failed", order_id)
        with self._lock:
            if settled:
                for waiter in self._waiters.pop(order_id, []):
                    waiter.order = order
                    waiter.done.set()
            again = self._running.pop(order_id, False)
            if settled and not again:
                self._attempts.pop(order_id, None)
                return
            attempt = self._attempts.get(order_id, 0)
            self._attempts[order_id] = attempt + 1
            delay = 0.0 if again else self._delays[min(attempt, len(self._delays) - 1)]
            # The re-run keeps the first pass's context (correlation id, trace): one
            # checkout stays one trace however many passes it takes.
            heapq.heappush(self._timers, (self._clock() + delay, order_id, advance,
                                          contextvars.copy_context()))
            self._wake.notify()

    def _schedule_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (
                        not self._timers or self._timers[0][0] > self._clock()):
                    timeout = None if not self._timers else self._timers[0][0] - self._clock()
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, order_id, advance, context = heapq.heappop(self._timers)
            context.run(self.submit, order_id, advance)

    def pending(self) -> int:
        """Sagas running or waiting for a re-run in this process."""
        with self._lock:
            return len(self._running) + len(self._timers)

    def stop(self) -> None:
        """Stop scheduling; running passes finish (recovery takes over the rest)."""
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:  # nobody waits for a pass that will not run
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.done.set()
            self._waiters.clear()
