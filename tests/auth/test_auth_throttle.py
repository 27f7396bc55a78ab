"""Brute-force limits: back-off per account + IP, per IP and per account; trusted proxies;
the Argon2 gate; audit lines; Redis-shared counters. The clock is injected: no sleeps."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from typing import Any

import pytest
from auth_helpers import basic, csrf_from
from flask import Flask
from flask.testing import FlaskClient

from auth import accounts
from auth.app import create_flask_app
from auth.settings import Settings
from auth.store import Client
from auth.throttle import (
    Backoff,
    HashingGate,
    MemoryStore,
    RedisStore,
    Throttle,
    ThrottleSettings,
)
from auth.views import LOGIN_FAILED
from auth.web import EXTENSION
from charter.db import Database
from tests.support.clocks import SettableClock
from tests.support.plugin import assert_problem

PASSWORD = "correct-horse-battery"
VICTIM = "victim@example.com"
OTHER = "other@example.com"
ATTACKER_IP = "203.0.113.66"
USER_IP = "198.51.100.7"
PROXY = "10.0.0.1"


@pytest.fixture
def users(db: Database) -> None:
    with db.session() as session:
        accounts.create_user(session, VICTIM, PASSWORD)
        accounts.create_user(session, OTHER, PASSWORD)


@pytest.fixture
def clock() -> SettableClock:
    """The throttle's clock (epoch seconds): tests move it instead of sleeping."""
    return SettableClock()


def _app(db: Database, settings: Settings, clock: SettableClock, **limits: Any) -> Flask:
    throttle_settings = replace(ThrottleSettings(), **limits)
    app = create_flask_app(db, replace(settings, throttle=throttle_settings))
    app.config["TESTING"] = True
    context = app.extensions[EXTENSION]
    context.throttle = Throttle(throttle_settings, "test-key", clock=clock)
    return app


@pytest.fixture
def app(db: Database, settings: Settings, clock: SettableClock, users: None) -> Flask:
    return _app(db, settings, clock,
                trusted_proxies=(ipaddress.ip_network("10.0.0.0/29"),))


def browser(app: Flask, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def sign_in(client: FlaskClient, email: str, password: str, **headers: str) -> Any:
    page = client.get("/login", headers=headers)
    return client.post("/login", headers=headers, data={
        "csrf_token": csrf_from(page.get_data(as_text=True)), "email": email,
        "password": password, "next": "/"})


def test_twenty_wrong_passwords_are_throttled_then_the_right_one_works(app, clock) -> None:
    client = browser(app, ATTACKER_IP)
    statuses = [sign_in(client, VICTIM, f"guess-{i:04d}-wrong").status_code for i in range(20)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 15

    throttled = sign_in(client, VICTIM, PASSWORD)  # even the right password waits
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    assert LOGIN_FAILED in throttled.get_data(as_text=True)

    clock.advance(int(throttled.headers["Retry-After"]))
    signed_in = sign_in(client, VICTIM, PASSWORD)
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/"
    # A success clears the account + IP counter: the next typo is not throttled.
    assert sign_in(browser(app, ATTACKER_IP), VICTIM, "one-more-typo").status_code == 401


def test_back_off_doubles_and_is_capped(app, clock) -> None:
    client = browser(app, ATTACKER_IP)
    throttle = app.extensions[EXTENSION].throttle
    waits = []
    for i in range(20):  # a patient attacker who always waits out the delay
        assert sign_in(client, VICTIM, f"guess-{i:04d}-wrong").status_code == 401
        waits.append(throttle.retry_after("login", VICTIM, ATTACKER_IP))
        clock.advance(waits[-1])
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:9] == [1, 2, 4, 8, 16]
    assert waits[-1] == 900  # AUTH_MAX_BACKOFF: ~4 guesses an hour from then on


def test_unknown_account_is_throttled_exactly_like_a_real_one(app) -> None:
    real = [sign_in(browser(app, ATTACKER_IP), VICTIM, "wrong-password-x") for _ in range(7)]
    ghost = [sign_in(browser(app, ATTACKER_IP), "nobody@example.com", "wrong-password-x")
             for _ in range(7)]
    assert [r.status_code for r in real] == [r.status_code for r in ghost]
    assert {LOGIN_FAILED in r.get_data(as_text=True) for r in real + ghost} == {True}


def test_another_ip_and_another_account_are_not_affected(app) -> None:
    attacker = browser(app, ATTACKER_IP)
    for i in range(20):
        sign_in(attacker, VICTIM, f"guess-{i:04d}-wrong")
    assert sign_in(attacker, VICTIM, PASSWORD).status_code == 429
    assert sign_in(browser(app, USER_IP), VICTIM, PASSWORD).status_code == 302
    assert sign_in(browser(app, ATTACKER_IP), OTHER, PASSWORD).status_code == 302


def test_per_ip_limit_stops_password_spraying(db, settings, clock, users) -> None:
    app = _app(db, settings, clock, ip=Backoff(free=10))
    sprayer = browser(app, ATTACKER_IP)
    statuses = [sign_in(sprayer, f"user{i}@example.com", "Summer2026!!").status_code
                for i in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    assert sign_in(browser(app, USER_IP), VICTIM, PASSWORD).status_code == 302


def test_per_account_limit_slows_a_distributed_attack_without_locking_out(
        db, settings, clock, users) -> None:
    app = _app(db, settings, clock, account=Backoff(free=10, cap=60))
    for i in range(10):
        sign_in(browser(app, f"203.0.113.{i + 1}"), VICTIM, "wrong-password-x")
    slowed = sign_in(browser(app, USER_IP), VICTIM, PASSWORD)
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) <= 60
    clock.advance(60)
    assert sign_in(browser(app, USER_IP), VICTIM, PASSWORD).status_code == 302


def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(app) -> None:
    via_proxy = browser(app, PROXY)
    for i in range(20):
        sign_in(via_proxy, VICTIM, f"guess-{i:04d}-wrong", **{"X-Forwarded-For": ATTACKER_IP})
    # The attacker behind the proxy is throttled, the user behind the same proxy is not.
    assert sign_in(via_proxy, VICTIM, PASSWORD,
                   **{"X-Forwarded-For": ATTACKER_IP}).status_code == 429
    assert sign_in(via_proxy, VICTIM, PASSWORD,
                   **{"X-Forwarded-For": USER_IP}).status_code == 302

    # From an untrusted peer the header is ignored: a new fake address per try is no escape.
    direct = browser(app, "192.0.2.50")
    statuses = [sign_in(direct, OTHER, "wrong-password-x",
                        **{"X-Forwarded-For": f"198.18.0.{i}"}).status_code for i in range(8)]
    assert statuses[5:] == [429, 429, 429]


def test_forwarded_header_is_honoured_only_from_a_trusted_proxy(app) -> None:
    """RFC 7239 ``Forwarded`` counts like ``X-Forwarded-For`` (charter.security.client_ip)."""
    via_proxy = browser(app, PROXY)
    for i in range(20):
        sign_in(via_proxy, VICTIM, f"guess-{i:04d}-wrong", Forwarded=f"for={ATTACKER_IP}")
    assert sign_in(via_proxy, VICTIM, PASSWORD,
                   Forwarded=f"for={ATTACKER_IP}").status_code == 429
    assert sign_in(via_proxy, VICTIM, PASSWORD,
                   Forwarded=f'for="{USER_IP}:4711"').status_code == 302
    direct = browser(app, "192.0.2.51")
    statuses = [sign_in(direct, OTHER, "wrong-password-x",
                        Forwarded=f"for=198.18.1.{i}").status_code for i in range(8)]
    assert statuses[5:] == [429, 429, 429]


def test_token_endpoint_answers_429_with_retry_after(app, db, clock) -> None:
    with db.session() as session:
        client = Client(client_id="victim-service", client_name="Victim",
                        grant_types=["client_credentials"], response_types=[], redirect_uris=[],
                        scope="catalog:read", token_endpoint_auth_method="client_secret_basic")
        client.set_secret("the-real-secret-value")
        session.add(client)
    attacker = browser(app, ATTACKER_IP)
    statuses = []
    last: Any = None
    for i in range(20):
        last = attacker.post("/oauth/token", data={"grant_type": "client_credentials"},
                             headers=basic("victim-service", f"guess-{i}"))
        statuses.append(last.status_code)
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 15
    assert assert_problem(last, 429)["error"] == "slow_down"
    wait = int(last.headers["Retry-After"])

    good = {"grant_type": "client_credentials"}
    real = basic("victim-service", "the-real-secret-value")
    assert attacker.post("/oauth/token", data=good, headers=real).status_code == 429
    assert browser(app, USER_IP).post("/oauth/token", data=good, headers=real).status_code == 200
    clock.advance(wait)
    assert attacker.post("/oauth/token", data=good, headers=real).status_code == 200


def test_argon2_work_is_bounded(app) -> None:
    context = app.extensions[EXTENSION]
    context.gate = HashingGate(limit=1, wait=0.01)
    client = browser(app, USER_IP)
    page = client.get("/login")
    with context.gate.slot():  # the only slot is taken: the request does not queue
        busy = client.post("/login", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                           "email": VICTIM, "password": PASSWORD})
        registered = client.post("/register", json={"email": "new@example.com",
                                                     "password": "long-enough-password"})
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert_problem(registered, 503)
    assert sign_in(client, VICTIM, PASSWORD).status_code == 302  # slot free again


def test_failed_logins_are_audited_without_secrets(app, caplog) -> None:
    caplog.set_level(logging.INFO, logger="auth.audit")
    client = browser(app, ATTACKER_IP)
    for _ in range(6):
        sign_in(client, VICTIM, "hunter2-secret-guess")
    lines = [r for r in caplog.records if r.name == "auth.audit"]
    assert [r.getMessage() for r in lines] == ["login.failed"] * 5 + ["login.throttled"]
    assert {r.client_ip for r in lines} == {ATTACKER_IP}  # type: ignore[attr-defined]
    assert lines[4].failures == 5  # type: ignore[attr-defined]
    assert len({r.account for r in lines}) == 1  # type: ignore[attr-defined]
    assert "hunter2" not in caplog.text and VICTIM not in caplog.text
    assert "victim" not in str([r.__dict__ for r in lines])


@pytest.mark.redis
def test_redis_counters_are_shared_between_workers(db, settings, users, redis_url) -> None:
    clock = SettableClock()
    limits = replace(ThrottleSettings(), redis_url=redis_url)
    workers = []
    for _ in range(2):  # two processes' worth of apps, one Redis
        app = create_flask_app(db, replace(settings, throttle=limits))
        app.extensions[EXTENSION].throttle = Throttle(limits, "test-key",
                                                      store=RedisStore(redis_url), clock=clock)
        workers.append(app)
    for i in range(5):
        worker = workers[i % 2]
        assert sign_in(browser(worker, ATTACKER_IP), VICTIM, f"wrong-{i}-pass").status_code == 401
    for worker in workers:
        assert sign_in(browser(worker, ATTACKER_IP), VICTIM, PASSWORD).status_code == 429
    clock.advance(1)
    assert sign_in(browser(workers[1], ATTACKER_IP), VICTIM, PASSWORD).status_code == 302


def test_memory_store_forgets_after_the_quiet_window() -> None:
    clock = SettableClock()
    throttle = Throttle(ThrottleSettings(), "k", store=MemoryStore(), clock=clock)
    for _ in range(8):
        throttle.failed("login", "a@example.com", "192.0.2.1")
    assert throttle.retry_after("login", "a@example.com", "192.0.2.1") > 0
    clock.advance(3601)
    assert throttle.retry_after("login", "a@example.com", "192.0.2.1") == 0
    assert throttle.failed("login", "a@example.com", "192.0.2.1") == 1
