"""The checkout saga: each step failing compensates what came before, an order in
another currency is settled in EUR, a crash between steps is resumed without acting
twice, the deadline ends what waits for an unreachable service, every log line of a step
carries the saga id, and the threaded runner settles checkouts in the background."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryExchange,
    InMemoryPayments,
)
from orders_support import Auth, keyed
from test_orders_v2 import TOKEN, FakeCheckoutPayments

from charter.db import Database
from charter.observability.logs import JSONFormatter
from charter.testing import TokenFactory
from services.orders.app import checkout_service, create_app
from services.orders.checkout import CheckoutService
from services.orders.ports import PaymentOutcome, PaymentsUnavailable
from services.orders.saga_runner import ThreadSagaRunner
from tests.support.clocks import SettableClock

USD = {"items": [{"product_id": 5, "quantity": 2}], "currency": "USD", "payment_method": TOKEN}
EUR = {"items": [{"product_id": 1, "quantity": 2}], "payment_method": TOKEN}


@pytest.fixture
def exchange() -> InMemoryExchange:
    return InMemoryExchange()


@pytest.fixture
def checkout_payments() -> FakeCheckoutPayments:
    return FakeCheckoutPayments()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, checkout_payments: FakeCheckoutPayments,
        exchange: InMemoryExchange, clock: SettableClock) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                      payments=payments,
                      checkout_payments=checkout_payments, exchange=exchange,
                      clock=clock.now)


@pytest.fixture
def saga(app: Any) -> CheckoutService:
    return checkout_service(app)


def checkout(client: Any, auth: Auth, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v2/orders", json=body, headers=keyed(auth("alice")))
    assert r.status_code == 202, r.text
    order: dict[str, Any] = r.json()
    return order


def read(client: Any, auth: Auth, order_id: str) -> dict[str, Any]:
    r = client.get(f"/v2/orders/{order_id}", headers=auth("alice"))
    assert r.status_code == 200, r.text
    order: dict[str, Any] = r.json()
    return order


def trail(client: Any, auth: Auth, order_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v2/orders/{order_id}/events?limit=100", headers=auth("alice"))
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def kinds(client: Any, auth: Auth, order_id: str) -> list[str]:
    return [e["type"] for e in trail(client, auth, order_id)]


# -- currency ----------------------------------------------------------------------------
def test_an_order_in_dollars_is_paid_in_euros(
        client: Any, auth: Auth, exchange: InMemoryExchange,
        checkout_payments: FakeCheckoutPayments) -> None:
    order = checkout(client, auth, USD)
    assert order["status"] == "confirmed", order
    assert order["total"] == {"amount_minor": 1000, "currency": "USD"}
    assert order["payment"]["amount"] == {"amount_minor": 920, "currency": "EUR"}
    assert exchange.calls == [(1000, "USD", "EUR")]
    paid = checkout_payments.payments[order["payment"]["id"]]
    assert (paid.amount, paid.currency, paid.status) == (920, "EUR", "captured")
    converted = [e for e in trail(client, auth, order["id"])
                 if e["type"] == "currency.converted"]
    assert [e["data"]["amount"] for e in converted] == [{"amount_minor": 920,
                                                         "currency": "EUR"}]


def test_no_rate_cancels_and_releases_the_stock(
        client: Any, auth: Auth, exchange: InMemoryExchange, catalog: InMemoryCatalog,
        checkout_payments: FakeCheckoutPayments) -> None:
    exchange.rates.clear()  # exchange has no rate, not even a last known one
    before = catalog.available(5)
    order = checkout(client, auth, USD)
    assert (order["status"], order["reason"]["code"]) == ("cancelled", "rate_unavailable")
    assert catalog.available(5) == before
    assert checkout_payments.calls == []
    assert kinds(client, auth, order["id"])[-2:] == ["order.cancelled", "release.done"]


def test_exchange_unreachable_past_the_deadline_cancels(
        client: Any, auth: Auth, exchange: InMemoryExchange, catalog: InMemoryCatalog,
        saga: CheckoutService, clock: SettableClock) -> None:
    exchange.down = True
    before = catalog.available(5)
    order = checkout(client, auth, USD)
    assert (order["status"], order["progress"]) == ("pending", "stock_reserved")
    assert saga.resume_pending(clock.now()) == {"saga:reserved": 1}  # still waiting
    clock.advance(61)
    saga.resume_pending(clock.now())
    after = read(client, auth, order["id"])
    assert (after["status"], after["reason"]["code"]) == ("cancelled", "rate_unavailable")
    assert catalog.available(5) == before


# -- payments ----------------------------------------------------------------------------
def test_a_payment_timeout_is_compensated_after_the_deadline(
        client: Any, auth: Auth, catalog: InMemoryCatalog, saga: CheckoutService,
        clock: SettableClock, checkout_payments: FakeCheckoutPayments) -> None:
    """Payments does not answer: the order waits, then past the deadline it is cancelled
    and its stock released; the authorisation that may exist is voided once payments is
    back (asked again with the same key: never a second one), and nothing is captured."""
    before = catalog.available(1)
    checkout_payments.down = True
    order = checkout(client, auth, EUR)
    assert order["status"] == "pending"
    assert "payment.requested" in kinds(client, auth, order["id"])
    clock.advance(61)
    saga.resume_pending(clock.now())
    cancelled = read(client, auth, order["id"])
    assert (cancelled["status"], cancelled["reason"]["code"]) == ("cancelled",
                                                                  "payment_failed")
    assert catalog.available(1) == before
    assert not saga.settled(saga._load(order["id"]))  # the void is still due
    checkout_payments.down = False
    saga.resume_pending(clock.now())
    assert [a for a, _ in checkout_payments.calls] == ["authorize", "void"]
    assert [p.status for p in checkout_payments.payments.values()] == ["voided"]
    assert saga.settled(saga._load(order["id"]))
    assert saga.resume_pending(clock.now()) == {}


def test_a_lost_authorisation_answer_is_not_a_second_authorisation(
        client: Any, auth: Auth, saga: CheckoutService, clock: SettableClock,
        checkout_payments: FakeCheckoutPayments) -> None:
    real = checkout_payments.authorize

    def authorised_but_lost(*args: Any) -> PaymentOutcome:
        real(*args)
        raise PaymentsUnavailable("the answer was lost (test)")

    checkout_payments.authorize = authorised_but_lost  # type: ignore[method-assign]
    order = checkout(client, auth, EUR)
    assert order["status"] == "pending"
    checkout_payments.authorize = real  # type: ignore[method-assign]
    saga.resume_pending(clock.now())
    done = read(client, auth, order["id"])
    assert (done["status"], done["payment"]["status"]) == ("confirmed", "captured")
    assert [a for a, _ in checkout_payments.calls] == ["authorize", "capture"]
    assert len(checkout_payments.payments) == 1


def test_a_capture_refused_after_the_commit_voids_and_returns_the_stock(
        client: Any, auth: Auth, catalog: InMemoryCatalog,
        checkout_payments: FakeCheckoutPayments, saga: CheckoutService) -> None:
    def refused(payment_id: str, key: str) -> PaymentOutcome:
        return PaymentOutcome(checkout_payments.payments[payment_id], "capture_refused")

    checkout_payments.capture = refused  # type: ignore[method-assign]
    before = (catalog.on_hand[1], catalog.available(1))
    order = checkout(client, auth, EUR)
    assert (order["status"], order["reason"]["code"]) == ("cancelled", "payment_failed")
    assert catalog.reservations[order["id"]].status == "returned"
    assert (catalog.on_hand[1], catalog.available(1)) == before
    assert order["payment"]["status"] == "voided"
    assert kinds(client, auth, order["id"])[-4:] == [
        "stock.committed", "order.cancelled", "payment.voided", "stock.return_done"]
    assert saga.settled(saga._load(order["id"]))


def test_a_commit_refused_voids_and_cancels(
        client: Any, auth: Auth, catalog: InMemoryCatalog,
        checkout_payments: FakeCheckoutPayments) -> None:
    from services.orders.ports import TransitionOutcome, TransitionResult

    catalog.commit = lambda order_id, key: TransitionResult(  # type: ignore[method-assign]
        TransitionOutcome.CONFLICT, "reservation expired (test)")
    before = catalog.available(1)
    order = checkout(client, auth, EUR)
    assert (order["status"], order["reason"]["code"]) == ("cancelled", "insufficient_stock")
    assert [p.status for p in checkout_payments.payments.values()] == ["voided"]
    assert catalog.available(1) == before  # the hold released


# -- crashes -----------------------------------------------------------------------------
def test_a_crash_between_steps_is_resumed_and_acts_once(
        client: Any, auth: Auth, catalog: InMemoryCatalog, saga: CheckoutService,
        clock: SettableClock, checkout_payments: FakeCheckoutPayments,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after the authorisation was recorded (the pass never reached the
    commit); recovery finishes the saga: one reservation, one authorisation, one
    commit, one capture."""
    def crash(self: CheckoutService, order: Any) -> Any:
        raise RuntimeError("kill -9 (simulated)")

    monkeypatch.setattr(CheckoutService, "_finish", crash)
    order = checkout(client, auth, EUR)
    assert (order["status"], order["progress"]) == ("pending", "payment_authorized")
    monkeypatch.undo()
    assert saga.resume_pending(clock.now()) == {"saga:confirmed": 1}
    assert read(client, auth, order["id"])["status"] == "confirmed"
    oid = order["id"]
    assert catalog.effects[("reserve", f"order-{oid}-reserve")] == 1
    assert catalog.effects[("commit", f"order-{oid}-commit")] == 1
    assert [a for a, _ in checkout_payments.calls] == ["authorize", "capture"]
    assert saga.resume_pending(clock.now()) == {}


# -- logs --------------------------------------------------------------------------------
def test_every_log_line_of_a_saga_pass_carries_the_saga_id(
        client: Any, auth: Auth, exchange: InMemoryExchange) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter("orders"))
    logger = logging.getLogger("services.orders")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        order = checkout(client, auth, USD)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    steps = [line for line in lines if line["logger"] == "services.orders.checkout"]
    assert len(steps) >= 3  # converted, authorised, confirmed
    assert {line.get("saga_id") for line in steps} == {order["id"]}


# -- the threaded runner ------------------------------------------------------------------
def test_the_threaded_runner_settles_in_the_background(
        db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, checkout_payments: FakeCheckoutPayments,
        exchange: InMemoryExchange, auth: Auth) -> None:
    """202 at once with the order pending; payments down at first: the runner comes back
    by itself (no recovery sweep) and the order ends confirmed."""
    holder: dict[str, CheckoutService] = {}
    runner = ThreadSagaRunner(lambda order: holder["saga"].settled(order), workers=2,
                              delays=(0.05, 0.1))
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                     payments=payments,
                     checkout_payments=checkout_payments, exchange=exchange, runner=runner)
    holder["saga"] = checkout_service(app)
    checkout_payments.down = True
    try:
        with app.test_client() as client:
            order = checkout(client, auth, EUR)
            assert order["status"] == "pending"
            wait_for(lambda: "payment.requested" in kinds(client, auth, order["id"]))
            checkout_payments.down = False
            wait_for(lambda: read(client, auth, order["id"])["status"] == "confirmed")
            assert [a for a, _ in checkout_payments.calls] == ["authorize", "capture"]
            wait_for(lambda: runner.pending() == 0)
    finally:
        runner.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_stale_second_pass_never_takes_a_captured_order_back(
        client: Any, auth: Auth, saga: CheckoutService, clock: SettableClock,
        checkout_payments: FakeCheckoutPayments) -> None:
    """Found by the chaos run: two passes got the (keyed, replayed) authorisation answer;
    the late one recorded ``authorized`` on an order already confirmed and captured, and
    nothing healed it. The late answer is ignored now, and a confirmed order whose
    capture is still due is captured by the saga."""
    stale: dict[str, Any] = {}
    real = CheckoutService._authorize

    def keep_a_stale_copy(self: CheckoutService, order: Any) -> Any:
        stale["order"] = order.copy()
        return real(self, order)

    CheckoutService._authorize = keep_a_stale_copy  # type: ignore[method-assign]
    try:
        order = checkout(client, auth, EUR)
    finally:
        CheckoutService._authorize = real  # type: ignore[method-assign]
    assert (order["status"], order["payment"]["status"]) == ("confirmed", "captured")
    saga._authorize(stale["order"])  # the other pass, late, with the same keyed answer
    after = read(client, auth, order["id"])
    assert (after["status"], after["payment"]["status"]) == ("confirmed", "captured")
    assert kinds(client, auth, order["id"]).count("payment.authorized") == 1
    assert saga.resume_pending(clock.now()) == {}


def test_a_confirmed_order_whose_capture_is_due_is_captured_by_the_saga(
        saga: CheckoutService, db: Database, clock: SettableClock,
        checkout_payments: FakeCheckoutPayments) -> None:
    from services.orders.domain import Order, OrderLine
    from services.orders.store import SqlOrderRepository

    payment = checkout_payments.authorize("o-legacy", "alice", 500, "EUR", "tok_visa", "k-1")
    assert payment.payment is not None
    order = Order.place("o-legacy", "alice", [OrderLine(1, "S", "N", 250, "EUR", 2)], "EUR",
                        clock.now())
    order.request_checkout(clock.now())
    order.mark_reserved(clock.now())
    order.record_payment(payment.payment.id, "authorized", clock.now())
    order.start_confirmation(payment.payment.id, clock.now())
    order.mark_committed(clock.now())
    order.confirm(clock.now())  # confirmed before its capture (an older version did that)
    with db.write() as session:
        SqlOrderRepository(session).add(order)
    assert not saga.settled(saga._load("o-legacy"))
    assert saga.resume_pending(clock.now()) == {"saga:confirmed": 1}
    assert saga._load("o-legacy").payment_status == "captured"
    assert saga.settled(saga._load("o-legacy"))


# -- Prefer: wait (RFC 7240) -----------------------------------------------------------
def threaded_app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog,
                 cart: InMemoryCart, payments: InMemoryPayments,
                 checkout_payments: FakeCheckoutPayments, exchange: InMemoryExchange,
                 **runner_options: Any) -> tuple[Any, ThreadSagaRunner]:
    """The app with the service's threaded runner (what ``create_asgi`` builds)."""
    holder: dict[str, CheckoutService] = {}
    runner = ThreadSagaRunner(lambda order: holder["saga"].settled(order), workers=2,
                              delays=(0.05, 0.1), **runner_options)
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                     payments=payments, checkout_payments=checkout_payments,
                     exchange=exchange, runner=runner)
    holder["saga"] = checkout_service(app)
    return app, runner


def test_prefer_wait_answers_with_the_final_order(
        db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, checkout_payments: FakeCheckoutPayments,
        exchange: InMemoryExchange, auth: Auth) -> None:
    """With the threaded runner the plain answer is ``pending``; ``Prefer: wait=N`` answers
    once the saga settled, says so in ``Preference-Applied`` (N capped at 5), and a
    preference it does not know is ignored, not refused."""
    app, runner = threaded_app(db, tokens, catalog, cart, payments, checkout_payments,
                               exchange)
    try:
        with app.test_client() as client:
            plain = client.post("/v2/orders", json=EUR, headers=keyed(auth("alice")))
            assert plain.status_code == 202 and "Preference-Applied" not in plain.headers
            for prefer, applied in (("wait=3", "wait=3"), ("respond-async, WAIT=60", "wait=5"),
                                    ("return=minimal", None), ("wait=soon", None)):
                r = client.post("/v2/orders", json=EUR,
                                headers={**keyed(auth("alice")), "Prefer": prefer})
                assert r.status_code == 202, r.text
                assert r.headers.get("Preference-Applied") == applied, prefer
                assert r.headers["Location"].endswith(r.json()["id"])
                if applied:
                    assert r.json()["status"] == "confirmed", prefer
            wait_for(lambda: runner.pending() == 0)
    finally:
        runner.stop()


def test_prefer_wait_ends_at_its_deadline_when_a_service_is_down(
        db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, checkout_payments: FakeCheckoutPayments,
        exchange: InMemoryExchange, auth: Auth) -> None:
    """Payments down: the wait ends after N seconds with the order as far as it got; the
    saga goes on without the request and confirms once payments is back."""
    app, runner = threaded_app(db, tokens, catalog, cart, payments, checkout_payments,
                               exchange)
    checkout_payments.down = True
    try:
        with app.test_client() as client:
            began = time.monotonic()
            r = client.post("/v2/orders", json=EUR,
                            headers={**keyed(auth("alice")), "Prefer": "wait=1"})
            took = time.monotonic() - began
            assert r.status_code == 202 and r.headers["Preference-Applied"] == "wait=1"
            assert r.json()["status"] == "pending"
            assert 0.9 <= took < 3.0, took
            checkout_payments.down = False
            wait_for(lambda: read(client, auth, r.json()["id"])["status"] == "confirmed")
    finally:
        runner.stop()


def test_no_more_than_max_waiting_requests_wait(
        db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, checkout_payments: FakeCheckoutPayments,
        exchange: InMemoryExchange, auth: Auth) -> None:
    """Each waiting request holds a request thread: beyond ``max_waiting`` the answer comes
    at once, without ``Preference-Applied`` (the preference is not honoured)."""
    app, runner = threaded_app(db, tokens, catalog, cart, payments, checkout_payments,
                               exchange, max_waiting=0)
    try:
        with app.test_client() as client:
            r = client.post("/v2/orders", json=EUR,
                            headers={**keyed(auth("alice")), "Prefer": "wait=5"})
            assert r.status_code == 202 and "Preference-Applied" not in r.headers
            wait_for(lambda: read(client, auth, r.json()["id"])["status"] == "confirmed")
    finally:
        runner.stop()


def test_stopping_the_runner_releases_its_waiters() -> None:
    """A waiter whose saga will never run again (the runner stops) returns at once."""
    import threading

    release = threading.Event()

    def slow(order_id: str) -> Any:
        release.wait(5)
        raise RuntimeError("not settled")

    runner = ThreadSagaRunner(lambda order: True, workers=1, delays=(10.0,))
    answer: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: answer.update(
        result=runner.submit_and_wait("o-1", slow, 30.0)))
    waiter.start()
    wait_for(lambda: runner.waiting() == 1)
    began = time.monotonic()
    runner.stop()
    waiter.join(5)
    release.set()
    assert not waiter.is_alive() and time.monotonic() - began < 2
    assert answer["result"] == (True, None)
