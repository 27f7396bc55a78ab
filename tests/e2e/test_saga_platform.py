"""The checkout saga on the real platform: ``charter up`` processes, a real broker and
real databases, everything through the gateway.

One platform per broker, shared by the three tests of this module:

* ``embedded``: the server-less broker (``<var>/broker.db``) and SQLite files;
* ``rabbitmq``: RabbitMQ (``AMQP_URL``) on a vhost of its own, created for the run and
  deleted afterwards, and one PostgreSQL database per service (``DATABASE_URL`` with
  ``{service}``), dropped afterwards. Both servers follow the skip-or-fail rule.

The platform is two ``charter up`` runners: one for every component but loyalty, and
``charter up --only loyalty --no-seed`` beside it (same ports, PKI, broker and database
server), so loyalty can be taken down and brought back without a supervisor restarting
it. The loyalty runner has a var dir of its own: two runners in one var dir overwrite
each other's ``supervisor.json``.

1. happy path: a v2 checkout with a known ``X-Correlation-Id`` → confirmed → alice's
   points → the confirmation e-mail → the order's follow-ups done; the correlation id is
   in the JSON logs of the services the saga went through, and orders' saga lines carry
   ``saga_id`` = the order id; ``charter logs --correlation-id`` shows that checkout from
   the per-process log files, every service, in time order.
2. crash recovery: one step slowed to 1.5 s with a fault profile (payments'
   ``authorize_payment``, or catalog's ``commit_reservation`` once the payment is
   authorised); 10 checkouts; every orders worker ``kill -9``'d while the sagas wait at
   that step; the supervisor restarts them and recovery finishes the sagas: all
   confirmed, one payment each, stock committed exactly once and nothing left reserved.
3. loyalty down: 50 checkouts confirmed while loyalty is stopped; once it is back every
   award is applied exactly once and orders records every ``loyalty_status`` done.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from charter.faults import CHECK_INTERVAL, set_faults
from charter.messaging import embedded
from charter.messaging.broker import Broker, UnknownQueue
from charterctl.user_login import user_token
from services.loyalty.domain import points_for
from services.loyalty.messaging import QUEUE as LOYALTY_QUEUE
from services.notifications.messaging import SUBSCRIPTIONS as NOTIFICATION_SUBSCRIPTIONS
from services.orders.messaging import QUEUE as ORDERS_REPLIES
from tests.support.brokers import AMQP_TEST_URL, require_rabbitmq
from tests.support.databases import drop_databases, skip_or_fail
from tests.support.platform import COMPONENTS, ROOT, Platform, postgres_env, start, stop
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

WORKERS = 2  # per service: "every orders worker" is more than one process
MAIN = ",".join(c for c in COMPONENTS if c != "loyalty")
CONSUMER_QUEUES = (LOYALTY_QUEUE, ORDERS_REPLIES,
                   *(s.queue for s in NOTIFICATION_SUBSCRIPTIONS))
GOOD_CARD = {"type": "token", "token": "tok_visa"}
SETTLE = 45.0  # seconds a saga (or a follow-up) may take under the test's faults
SAGA_SERVICES = {"orders", "catalog", "payments", "loyalty", "notifications"}
PASSWORDS = {"alice@example.com": "alice-password-1", "staff@example.com": "staff-password-1"}


# -- RabbitMQ: a vhost of the run's own ----------------------------------------------------

def _amqp_with_vhost(vhost: str) -> str:
    parts = urlsplit(AMQP_TEST_URL)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def _management_api(method: str, path: str, body: dict[str, str] | None = None) -> bool:
    """Call RabbitMQ's management API with the test credentials; False if it is absent."""
    parts = urlsplit(AMQP_TEST_URL)
    base = f"http://{parts.hostname or '127.0.0.1'}:15672/api"
    try:
        r = httpx.request(method, base + path, json=body, timeout=5,
                          auth=(parts.username or "guest", parts.password or "guest"))
    except httpx.HTTPError:
        return False
    return r.status_code < 300


def _rabbitmqctl(*args: str) -> bool:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        return False
    try:
        done = subprocess.run([exe, *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """The AMQP URL of a fresh vhost (deleted at exit), made through the management API
    or ``rabbitmqctl``. Skips (laptop) or fails (``CI=true``) when RabbitMQ is down or
    neither tool can create a vhost: on a shared vhost another platform's consumers would
    take this run's messages (the queue names are fixed)."""
    require_rabbitmq()
    parts = urlsplit(AMQP_TEST_URL)
    user = parts.username or "guest"
    vhost = f"charter-e2e-saga-{uuid.uuid4().hex[:10]}"
    name = quote(vhost, safe="")
    delete: Callable[[], bool]
    if _management_api("PUT", f"/vhosts/{name}"):
        def delete() -> bool:
            return _management_api("DELETE", f"/vhosts/{name}")

        granted = _management_api("PUT", f"/permissions/{name}/{quote(user, safe='')}",
                                  {"configure": ".*", "write": ".*", "read": ".*"})
    elif _rabbitmqctl("add_vhost", vhost):
        def delete() -> bool:
            return _rabbitmqctl("delete_vhost", vhost)

        granted = _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    else:
        skip_or_fail("cannot create a RabbitMQ vhost for the run (no management API on "
                     "15672, no working rabbitmqctl)")
    if not granted:
        delete()
        skip_or_fail(f"cannot give {user} permissions on the RabbitMQ vhost {vhost}")
    try:
        yield _amqp_with_vhost(vhost)
    finally:
        delete()


# -- the platform: everything but loyalty, and loyalty on its own ----------------------------

@dataclass
class Stack:
    """The main runner, the loyalty runner, and what the tests need to reach them."""

    kind: str
    main: Platform
    broker_url: str
    loyalty_dir: Path
    loyalty_env: dict[str, str]
    loyalty: subprocess.Popen[bytes] | None = None
    loyalty_logs: list[Path] = field(default_factory=list)
    used_products: set[int] = field(default_factory=set)

    @property
    def var(self) -> Path:
        return Path(self.main.env["CHARTER_VAR_DIR"])

    @property
    def gateway(self) -> str:
        return self.main.url("gateway")

    def start_loyalty(self) -> None:
        """``charter up --only loyalty --no-seed``; wait for its banner."""
        assert self.loyalty is None or self.loyalty.poll() is not None
        log = self.loyalty_dir / f"charter-up-loyalty-{len(self.loyalty_logs) + 1}.log"
        self.loyalty_logs.append(log)
        argv = [sys.executable, "-m", "charterctl.cli", "up", "--only", "loyalty",
                "--no-seed"]
        proc = subprocess.Popen(argv, env=self.loyalty_env, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, cwd=ROOT)
        self.loyalty = proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError("charter up --only loyalty exited:\n"
                                     + log.read_text(errors="replace")[-4000:])
            return "Charter is up" in log.read_text(errors="replace")

        wait_until(up, timeout=90, interval=0.3, what="charter up --only loyalty")

    def stop_loyalty(self) -> None:
        """Ctrl-C the loyalty runner (its supervisor restarts nothing)."""
        proc = self.loyalty
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def logs(self) -> str:
        """Everything the runners and their children wrote so far."""
        texts = [self.main.log.read_text(errors="replace")]
        texts += [p.read_text(errors="replace") for p in self.loyalty_logs if p.exists()]
        return "\n".join(texts)


@contextmanager
def _vhost_or_none(kind: str) -> Iterator[str | None]:
    """A fresh vhost's URL for ``rabbitmq``; ``None`` (the embedded broker) otherwise."""
    if kind == "rabbitmq":
        with rabbitmq_vhost() as url:
            yield url
    else:
        yield None


def _consumer_queues_declared(broker: Broker) -> bool:
    try:
        for queue in CONSUMER_QUEUES:
            broker.queue_depth(queue)
    except UnknownQueue:
        return False
    return True


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The platform on one broker (and its database kind), shared by this module's tests."""
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(f"saga-{kind}")
    env = {"GATEWAY_RATE_LIMIT": "0", "CHARTER_WORKERS": str(WORKERS),
           "ORDERS_RECOVERY_INTERVAL": "2"}
    databases: list[str] = []
    with _vhost_or_none(kind) as amqp_url:
        if amqp_url is not None:
            db_env, databases = postgres_env("charter_saga")
            env.update(db_env, AMQP_URL=amqp_url)
        main: Platform | None = None
        built: Stack | None = None
        try:
            (tmp / "main").mkdir()
            main = start(tmp / "main", env, only=MAIN)
            var = Path(main.env["CHARTER_VAR_DIR"])
            broker_url = amqp_url or embedded.url_for(var / "broker.db")
            loyalty_dir = tmp / "loyalty"
            loyalty_dir.mkdir()
            loyalty_env = {**main.env, "CHARTER_VAR_DIR": str(loyalty_dir / "var"),
                           "CHARTER_PKI_DIR": str(var / "pki"), "AMQP_URL": broker_url}
            built = Stack(kind, main, broker_url, loyalty_dir, loyalty_env)
            built.start_loyalty()
            # Events published before a consumer's queue exists are dropped (as RabbitMQ
            # drops unroutable messages): wait until every leader has declared its queues.
            with Broker(broker_url) as broker:
                wait_until(lambda: _consumer_queues_declared(broker), timeout=30,
                           interval=0.2, what="the consumers' queues")
            yield built
        finally:
            if built is not None:
                with suppress(Exception):
                    built.stop_loyalty()
            if main is not None and main.proc.poll() is None:
                stop(main)
            if databases:
                drop_databases(databases)


# -- calls through the gateway ----------------------------------------------------------------

def login(stack: Stack, email: str) -> dict[str, str]:
    """Authorization headers with a user token (code flow + PKCE against auth)."""
    token = user_token(stack.main.url("auth"), email, PASSWORDS[email],
                       redirect_uri=f"{stack.gateway}/ui/oauth2-redirect.html")
    return {"Authorization": f"Bearer {token['access_token']}"}


def get_json(http: httpx.Client, url: str, headers: dict[str, str],
             **params: Any) -> Any:
    r = http.get(url, headers=headers, params=params)
    assert r.status_code == 200, f"GET {url}: {r.status_code} {r.text[:300]}"
    return r.json()


def answer(http: httpx.Client, url: str, headers: dict[str, str],
           **params: Any) -> Any | None:
    """The JSON of a 200; ``None`` while the service is unreachable (5xx, no answer)."""
    try:
        r = http.get(url, headers=headers, params=params)
    except httpx.TransportError:
        return None
    if r.status_code >= 500:
        return None
    assert r.status_code == 200, f"GET {url}: {r.status_code} {r.text[:300]}"
    return r.json()


def stock_of(stack: Stack, http: httpx.Client, headers: dict[str, str],
             product_id: int) -> tuple[int, int]:
    """``(on_hand, reserved)`` of a product, from catalog."""
    doc = get_json(http, f"{stack.gateway}/catalog/v1/products/{product_id}/stock", headers)
    return int(doc["on_hand"]), int(doc["reserved"])


def pick_products(stack: Stack, http: httpx.Client, headers: dict[str, str], count: int,
                  min_on_hand: int) -> dict[int, tuple[int, int]]:
    """``count`` active EUR products no other test of the module used, each with at least
    ``min_on_hand`` units and nothing reserved: ``id → (on_hand, reserved)``."""
    page = get_json(http, f"{stack.gateway}/catalog/v1/products", headers, page_size=100)
    chosen: dict[int, tuple[int, int]] = {}
    for product in page["items"]:
        pid = int(product["id"])
        if (pid in stack.used_products or product["currency"] != "EUR"
                or not product.get("active", True)):
            continue
        level = stock_of(stack, http, headers, pid)
        if level[0] >= min_on_hand and level[1] == 0:
            chosen[pid] = level
            if len(chosen) == count:
                break
    assert len(chosen) == count, f"only {len(chosen)} products with {min_on_hand} units"
    stack.used_products.update(chosen)
    return chosen


def checkout(stack: Stack, http: httpx.Client, headers: dict[str, str],
             items: list[dict[str, int]], correlation_id: str | None = None) -> str:
    """``POST /orders/v2/orders`` (202); the order id."""
    extra = {"Idempotency-Key": f"saga-e2e-{uuid.uuid4().hex}"}
    if correlation_id:
        extra["X-Correlation-Id"] = correlation_id
    r = http.post(f"{stack.gateway}/orders/v2/orders", headers={**headers, **extra},
                  json={"items": items, "payment_method": GOOD_CARD})
    assert r.status_code == 202, r.text
    if correlation_id:
        assert r.headers["x-correlation-id"] == correlation_id
    return str(r.json()["id"])


def order_v2(stack: Stack, http: httpx.Client, headers: dict[str, str],
             order_id: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(http, f"{stack.gateway}/orders/v2/orders/{order_id}",
                                     headers)
    return found


def order_v1(stack: Stack, http: httpx.Client, headers: dict[str, str],
             order_id: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(http, f"{stack.gateway}/orders/v1/orders/{order_id}",
                                     headers)
    return found


def wait_final(stack: Stack, http: httpx.Client, headers: dict[str, str],
               order_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every order once its ``status`` is final (confirmed or cancelled)."""
    final: dict[str, dict[str, Any]] = {}

    def all_final() -> bool:
        for order_id in order_ids:
            if order_id not in final:
                order = answer(http, f"{stack.gateway}/orders/v2/orders/{order_id}", headers)
                if order is not None and order["status"] in ("confirmed", "cancelled"):
                    final[order_id] = order
        return len(final) == len(order_ids)

    wait_until(all_final, timeout=SETTLE, interval=0.25,
               what=f"{len(order_ids)} orders final ({len(final)} so far)")
    return final


def wait_follow_ups_done(stack: Stack, http: httpx.Client, headers: dict[str, str],
                         order_ids: list[str], *names: str) -> None:
    """Until the v1 view of every order shows ``<name>_status`` done for each name."""
    done: set[str] = set()

    def all_done() -> bool:
        for order_id in order_ids:
            if order_id not in done:
                order = answer(http, f"{stack.gateway}/orders/v1/orders/{order_id}", headers)
                if order is not None and all(order[f"{n}_status"] == "done" for n in names):
                    done.add(order_id)
        return len(done) == len(order_ids)

    wait_until(all_done, timeout=SETTLE, interval=0.25,
               what=f"{'/'.join(names)} done on {len(order_ids)} orders ({len(done)} so far)")


def balance(stack: Stack, http: httpx.Client, headers: dict[str, str]) -> int:
    return int(get_json(http, f"{stack.gateway}/loyalty/v1/balance", headers)["balance"])


def awards(stack: Stack, http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every award entry of the caller (all pages)."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        doc = get_json(http, f"{stack.gateway}/loyalty/v1/history", headers, type="award",
                       page=page, page_size=100)
        found += doc["items"]
        if not doc["items"] or len(found) >= int(doc["total"]):
            return found
        page += 1


def points_of(order: dict[str, Any]) -> int:
    """The points loyalty awards for a confirmed order (1 per whole unit by default)."""
    total = order["total"]
    return points_for(int(total["amount_minor"]), str(total["currency"]))


def log_lines(stack: Stack) -> list[dict[str, Any]]:
    """The JSON log lines every process of the stack wrote (other output skipped)."""
    lines: list[dict[str, Any]] = []
    for raw in stack.logs().splitlines():
        if raw.startswith("{"):
            with suppress(ValueError):
                doc = json.loads(raw)
                if isinstance(doc, dict):
                    lines.append(doc)
    return lines


# -- 1. happy path ---------------------------------------------------------------------------

def test_checkout_confirmed_points_awarded_notification_sent_one_correlation_id(
        stack: Stack) -> None:
    correlation_id = f"e2e-saga-{uuid.uuid4().hex[:12]}"
    with httpx.Client(timeout=10) as http:
        alice = login(stack, "alice@example.com")
        staff = login(stack, "staff@example.com")
        (product_id, (on_hand, _)), = pick_products(stack, http, alice, 1, 2).items()
        before = balance(stack, http, alice)

        order_id = checkout(stack, http, alice, [{"product_id": product_id, "quantity": 2}],
                            correlation_id)

        order = wait_final(stack, http, alice, [order_id])[order_id]
        assert order["status"] == "confirmed", order
        assert order["payment"]["status"] == "captured", order
        points = points_of(order)
        assert points > 0
        wait_until(lambda: balance(stack, http, alice) == before + points, timeout=SETTLE,
                   interval=0.25, what=f"alice's balance {before} + {points}")
        mine = [a for a in awards(stack, http, alice) if a["order_id"] == order_id]
        assert [a["points"] for a in mine] == [points], mine

        def sent() -> list[dict[str, Any]]:
            page = get_json(http, f"{stack.gateway}/notifications/v1/notifications", staff,
                            order_id=order_id)
            return [n for n in page["items"] if n["status"] == "sent"]

        notes = wait_until(sent, timeout=SETTLE, interval=0.25,
                           what="the order's notification sent")
        assert len(notes) == 1 and order_id in notes[0]["body"], notes
        wait_follow_ups_done(stack, http, alice, [order_id], "loyalty", "notification")
        assert stock_of(stack, http, alice, product_id) == (on_hand - 2, 0)

    def traced() -> set[str] | None:
        services = {str(line.get("service")) for line in log_lines(stack)
                    if line.get("correlation_id") == correlation_id}
        return services if services >= SAGA_SERVICES else None

    wait_until(traced, timeout=10, interval=0.3,
               what=f"{correlation_id} in the logs of {sorted(SAGA_SERVICES)}")
    lines = log_lines(stack)
    about_order = [line for line in lines if order_id in str(line.get("message"))
                   and not str(line.get("message")).startswith("GET ")]  # our own reads
    strays = [line for line in about_order if line.get("correlation_id") != correlation_id]
    assert about_order and not strays, strays  # one correlation id for the whole saga
    sagas = {str(line["saga_id"]) for line in lines
             if line.get("correlation_id") == correlation_id and "saga_id" in line}
    assert sagas == {order_id}, sagas
    assert any(line.get("service") == "orders" and line.get("saga_id") == order_id
               for line in lines), "no orders log line carries the saga id"
    _charter_logs_show_the_checkout(stack, correlation_id, order_id)


def _charter_logs_show_the_checkout(stack: Stack, correlation_id: str,
                                    order_id: str) -> None:
    """``charter logs --correlation-id`` over both runners' var dirs: the checkout in
    every service it touched, in time order, and every line the processes printed with
    that id (their stderr, merged in the runners' output) is in their log files."""
    var_dirs = ["--var-dir", str(stack.var),
                "--var-dir", stack.loyalty_env["CHARTER_VAR_DIR"]]
    printed = Counter(json.dumps(line, sort_keys=True) for line in log_lines(stack)
                      if line.get("correlation_id") == correlation_id)

    def merged() -> list[dict[str, Any]] | None:
        done = stack.main.charter("logs", "--json", "--correlation-id", correlation_id,
                                  *var_dirs)
        assert done.returncode == 0, done.stderr
        docs = [json.loads(raw) for raw in done.stdout.splitlines()]
        in_files = Counter(json.dumps(doc, sort_keys=True) for doc in docs)
        return docs if not printed - in_files else None

    docs = wait_until(merged, timeout=10, interval=0.5,
                      what=f"charter logs --correlation-id {correlation_id}")
    assert {doc["service"] for doc in docs} >= SAGA_SERVICES
    assert {doc["correlation_id"] for doc in docs} == {correlation_id}
    stamps = [doc["ts"] for doc in docs]
    assert stamps == sorted(stamps)
    assert any(doc["service"] == "orders" and doc.get("saga_id") == order_id for doc in docs)
    table = stack.main.charter("logs", "--correlation-id", correlation_id, *var_dirs)
    rows = table.stdout.splitlines()
    assert table.returncode == 0 and rows[0].startswith("TIME") and len(rows) == len(docs) + 1
    assert [row.split()[1] for row in rows[1:]] == [doc["service"] for doc in docs]


# -- 2. kill -9 orders between steps ---------------------------------------------------------

def _runner_children(stack: Stack, component: str) -> list[int] | None:
    """``component``'s pids from the main runner's ``supervisor.json``, once each is a
    live child of the runner (``None`` before)."""
    try:
        status = json.loads((stack.var / "supervisor.json").read_text())
    except (OSError, ValueError):
        return None
    pids = [int(p) for p in status.get("components", {}).get(component, {}).get("pids", [])]
    if status.get("pid") != stack.main.proc.pid or len(pids) != WORKERS:
        return None
    return pids if all(_parent(p) == stack.main.proc.pid for p in pids) else None


def _parent(pid: int) -> int | None:
    """The parent of a live process (``None``: gone, or a zombie)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None
    return None if state == "Z" else int(parent)


PROGRESS = ("placed", "stock_reserved", "payment_authorized", "confirmed")
KILL_POINTS = {  # step → (service, operation slowed, progress of an order waiting for it)
    "authorize": ("payments", "authorize_payment", "stock_reserved"),
    "commit": ("catalog", "commit_reservation", "payment_authorized"),
}


def _reached(order: dict[str, Any], progress: str) -> bool:
    """The order is at ``progress`` or past it (final counts as past)."""
    if order["status"] != "pending":
        return True
    return (order["progress"] in PROGRESS
            and PROGRESS.index(order["progress"]) >= PROGRESS.index(progress))


@pytest.mark.parametrize("step", sorted(KILL_POINTS))
def test_orders_killed_mid_saga_every_checkout_confirmed_once(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """``authorize``: killed while payments holds every authorisation (the killed
    requests never reach the handler; recovery authorises once). ``commit``: killed
    after the payment was authorised and recorded, while catalog holds the commits
    (recovery must reuse the payment, not authorise a second one)."""
    service, operation, waiting = KILL_POINTS[step]
    count = 10
    monkeypatch.setenv("CHARTER_VAR_DIR", str(stack.var))  # where set_faults writes
    with httpx.Client(timeout=15) as http:
        alice = login(stack, "alice@example.com")
        products = pick_products(stack, http, alice, 3, 2 * count)
        ids = sorted(products)
        plan = [[{"product_id": ids[i % len(ids)], "quantity": 1 + i % 2}]
                for i in range(count)]
        killed = wait_until(lambda: _runner_children(stack, "orders"), timeout=30,
                            interval=0.2, what="every orders worker running")
        set_faults(service, {operation: {"latency_ms": 1500}})
        try:
            time.sleep(2 * CHECK_INTERVAL)  # every worker re-reads the profile
            with ThreadPoolExecutor(count) as pool:
                order_ids = list(pool.map(lambda items: checkout(stack, http, alice, items),
                                          plan))

            # kill once every saga got to the slowed step (each call there takes 1.5 s)
            def at_step() -> list[dict[str, Any]] | None:
                orders = [order_v2(stack, http, alice, o) for o in order_ids]
                return orders if all(_reached(o, waiting) for o in orders) else None

            before_kill = wait_until(at_step, timeout=10, interval=0.05,
                                     what=f"every saga at {waiting}")
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        finally:
            set_faults(service, None)

        mid_saga = [o for o in before_kill
                    if o["status"] == "pending" and o["progress"] == waiting]
        assert mid_saga, f"no saga was waiting at {waiting} at the kill: nothing was tested"
        print(f"{len(mid_saga)} of {count} sagas pending at the kill:",
              dict(Counter(o["progress"] for o in before_kill)))
        restarted = wait_until(
            lambda: (p if (p := _runner_children(stack, "orders")) and not set(p) & set(killed)
                     else None),
            timeout=30, interval=0.2, what="the orders workers restarted")
        assert len(restarted) == WORKERS

        final = wait_final(stack, http, alice, order_ids)
        assert Counter(o["status"] for o in final.values()) == {"confirmed": count}, final
        for order_id in order_ids:
            page = get_json(http, f"{stack.gateway}/payments/v1/payments", alice,
                            order_id=order_id)
            assert page["total"] == 1 and len(page["items"]) == 1, (order_id, page)
            assert page["items"][0]["status"] == "captured", page
            assert final[order_id]["payment"]["id"] == page["items"][0]["id"]
        sold = Counter[int]()
        for items in plan:
            for item in items:
                sold[item["product_id"]] += item["quantity"]
        for product_id, (on_hand, _) in products.items():
            assert stock_of(stack, http, alice, product_id) == (
                on_hand - sold[product_id], 0), product_id
    log = stack.main.log.read_text(errors="replace")
    for index in range(1, WORKERS + 1):
        assert f"orders[worker {index}] exited with -9 (SIGKILL)" in log


# -- 3. loyalty down, then up ----------------------------------------------------------------

def test_loyalty_down_during_50_checkouts_then_every_award_applied_once(
        stack: Stack) -> None:
    count = 50
    with httpx.Client(timeout=15) as http:
        alice = login(stack, "alice@example.com")
        products = pick_products(stack, http, alice, 5, count // 5)
        ids = sorted(products)
        before = balance(stack, http, alice)
        earlier = {a["order_id"] for a in awards(stack, http, alice)}
        stack.stop_loyalty()
        r = http.get(f"{stack.gateway}/loyalty/v1/balance", headers=alice)
        assert r.status_code >= 500, r.text  # loyalty is really down

        plan = [[{"product_id": ids[i % len(ids)], "quantity": 1}] for i in range(count)]
        with ThreadPoolExecutor(10) as pool:
            order_ids = list(pool.map(lambda items: checkout(stack, http, alice, items),
                                      plan))
        final = wait_final(stack, http, alice, order_ids)
        assert Counter(o["status"] for o in final.values()) == {"confirmed": count}
        assert not earlier & set(order_ids)
        pending = [order_v1(stack, http, alice, o)["loyalty_status"] for o in order_ids]
        assert "done" not in pending, Counter(pending)  # nobody awarded them yet

        stack.start_loyalty()

        expected = {o: points_of(final[o]) for o in order_ids}
        wait_follow_ups_done(stack, http, alice, order_ids, "loyalty")

        def awarded() -> list[dict[str, Any]] | None:
            mine = [a for a in awards(stack, http, alice) if a["order_id"] in expected]
            return mine if len(mine) >= count else None

        mine = wait_until(awarded, timeout=SETTLE, interval=0.3, what="50 awards")
        per_order = Counter(a["order_id"] for a in mine)
        twice = {o: n for o, n in per_order.items() if n != 1}
        assert not twice and set(per_order) == set(expected), (twice, len(per_order))
        assert {a["order_id"]: a["points"] for a in mine} == expected
        assert balance(stack, http, alice) == before + sum(expected.values())
