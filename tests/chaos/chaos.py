"""The chaos run: N concurrent v2 checkouts while services are killed, then the invariants.

``python -m tests.chaos.chaos --n 200`` (``make chaos``) starts the platform (``charter up``)
in a temporary var dir (SQLite files, the embedded broker; ``--amqp [URL]`` for RabbitMQ),
records the initial stock of the products it will sell, runs ``--n`` checkouts through the
gateway from ``--concurrency`` clients (good cards, declined cards, quantities above the
stock, a USD product that needs a conversion), ``kill -9``s random service processes
meanwhile (the supervisor restarts them) and injects latency and errors for a while, then
waits (bounded) until every order is settled and every queue and outbox is drained, and
checks the invariants from the services' own databases and the broker. It prints the
table ``invariant | expected | actual | ok`` and exits 1 if any invariant fails (a run
that never settles fails the "terminal" row) or the platform does not start, 2 when
``--amqp`` names an unreachable RabbitMQ. ``--json PATH`` also writes the run as JSON
(invariants, kills and checkouts per second with their times, settle time) for
``make report`` (``bench/fault_report``). See ``docs/operations.md``, Chaos run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

KILLABLE = ("catalog", "payments", "orders", "loyalty", "notifications", "exchange")
OUTBOX_SERVICES = ("auth", "catalog", "orders", "loyalty", "notifications", "payments")
OPEN = ("pending", "pending_retry")
HELD = "held"
GOOD_TOKEN = "tok_visa"
DECLINED_TOKEN = "tok_card_declined"
FOREIGN_CURRENCY = "USD"
WHOLE_COMPONENT = 0.25  # share of kills that take every worker of the component
MIN_UPTIME = 11.0  # never kill a process younger than the supervisor's start-up window (10 s)
DLQ_LIMIT = 0.001  # under 0.1 % of the published messages may end in a DLQ
ALICE = "alice@example.com"

Out = Callable[[str], None]


# -- configuration and results -----------------------------------------------------------
@dataclass(frozen=True)
class ChaosConfig:
    """What one chaos run does."""

    n: int = 200
    concurrency: int = 10
    min_kills: int = 3
    max_kills: int | None = None
    kill_interval: tuple[float, float] = (2.0, 6.0)
    faults: bool = True
    amqp_url: str | None = None
    seed: int | None = None
    request_deadline: float = 90.0
    settle_timeout: float = 180.0
    recovery_interval: float = 2.0
    checkout_deadline: float = 60.0
    keep: bool = False


@dataclass(frozen=True)
class Invariant:
    """One row of the table."""

    name: str
    expected: str
    actual: str
    ok: bool


@dataclass
class Checkout:
    """What one client saw of one checkout."""

    index: int
    kind: str
    key: str
    order_id: str | None = None
    refused: str | None = None
    attempts: int = 0
    finished: float | None = None  # time.monotonic() when the client stopped trying

    @property
    def outcome(self) -> str:
        """``accepted`` (202), ``refused`` (a final 4xx) or ``gave_up`` (deadline)."""
        if self.order_id:
            return "accepted"
        return "gave_up" if (self.refused or "").startswith("gave up") else "refused"


@dataclass
class ChaosReport:
    """The outcome of a run: the invariants and what happened on the way."""

    invariants: list[Invariant] = field(default_factory=list)
    checkouts: list[Checkout] = field(default_factory=list)
    kills: list[tuple[float, str, int]] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    settled_after: float | None = None
    var_dir: Path | None = None
    started: float | None = None  # time.monotonic() of the load's start (kill times' zero)
    load_ended: float | None = None  # … when the last checkout was answered
    settle_started: float | None = None  # … when every service was back

    @property
    def ok(self) -> bool:
        """Every invariant holds (and there is at least one)."""
        return bool(self.invariants) and all(i.ok for i in self.invariants)


# -- the databases (read-only) -----------------------------------------------------------
def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to a service's SQLite file (WAL: readers never block it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


@contextlib.contextmanager
def database(var: Path, service: str) -> Iterator[sqlite3.Connection]:
    """The service's database file under ``var``, read-only."""
    conn = connect(var / f"{service}.db")
    try:
        yield conn
    finally:
        conn.close()


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    """Whether ``table`` exists."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (table,)).fetchone()
    return row is not None


def stock_levels(var: Path) -> dict[int, tuple[int, int]]:
    """``product_id → (on_hand, reserved)`` from catalog's database."""
    with database(var, "catalog") as db:
        return {int(r["product_id"]): (int(r["on_hand"]), int(r["reserved"]))
                for r in db.execute("SELECT product_id, on_hand, reserved FROM stock")}


def settled(row: sqlite3.Row) -> bool:
    """The order's saga has nothing left to do (``CheckoutService.settled`` on the read
    model): final, captured if confirmed, compensated if cancelled."""
    status = row["status"]
    if status == "confirmed":
        return bool(row["payment_status"] != "authorized")
    if status == "rejected":
        return True
    if status != "cancelled":
        return False
    return (row["release_status"] not in OPEN and row["stock_returned"] not in OPEN
            and row["payment_status"] not in ("requested", "authorized"))


def order_rows(var: Path) -> list[sqlite3.Row]:
    """Every order of the orders read model."""
    with database(var, "orders") as db:
        return list(db.execute(
            "SELECT id, status, currency, total, rejection_code, payment_status, "
            "release_status, stock_returned FROM orders"))


def unsent_outbox(var: Path) -> dict[str, tuple[int, int]]:
    """``service → (unsent, sent)`` outbox rows of every service that has an outbox."""
    found: dict[str, tuple[int, int]] = {}
    for service in OUTBOX_SERVICES:
        if not (var / f"{service}.db").exists():
            continue
        with database(var, service) as db:
            if not has_table(db, "outbox"):
                continue
            unsent = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()
            sent = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()
            found[service] = (int(unsent[0]), int(sent[0]))
    return found


# -- the broker -------------------------------------------------------------------------
def consumer_queues() -> list[str]:
    """Every consumer queue and its delay tiers (from the services' subscriptions)."""
    from services.loyalty.messaging import SUBSCRIPTIONS as LOYALTY
    from services.notifications.messaging import SUBSCRIPTIONS as NOTIFICATIONS
    from services.orders.messaging import SUBSCRIPTIONS as ORDERS

    names: list[str] = []
    for sub in (*LOYALTY, *NOTIFICATIONS, *ORDERS):
        names.append(sub.queue)
        names.extend(f"{sub.queue}.retry.{n}" for n in range(1, len(sub.tiers()) + 1))
    return names


class BrokerProbe:
    """Messages left in the consumer queues (with their delay tiers) and in the DLQs.

    Embedded broker: every row of ``broker.db`` counts (ready, delayed or delivered and not
    acked). RabbitMQ: the ready count of the known queues (``charter.messaging``), so an
    in-flight message shows only once it is back; the DLQ count is the growth since the
    run started (the queues are shared with whatever else uses that vhost).
    """

    def __init__(self, var: Path, amqp_url: str | None) -> None:
        self.var = var
        self.amqp_url = amqp_url
        self.queues = consumer_queues()
        self.dlq_baseline = 0
        if amqp_url:
            self.dlq_baseline = sum(self._rabbit_depths(dlq=True).values())

    def _rabbit_depths(self, *, dlq: bool) -> dict[str, int]:
        from charter.messaging.broker import Broker, UnknownQueue, dead_letter_queue

        assert self.amqp_url
        broker = Broker(self.amqp_url)
        try:
            names = ([dead_letter_queue(q) for q in self.queues if ".retry." not in q]
                     if dlq else self.queues)
            found: dict[str, int] = {}
            for name in names:
                try:
                    found[name] = broker.queue_depth(name)
                except UnknownQueue:
                    found[name] = 0
            return found
        finally:
            broker.close()

    def pending(self) -> dict[str, int]:
        """``queue → messages`` not yet processed (outside the DLQs)."""
        if self.amqp_url:
            return self._rabbit_depths(dlq=False)
        return {q: n for q, n in self._embedded().items() if not q.endswith(".dlq")}

    def dead(self) -> dict[str, int]:
        """``dlq → messages`` dead-lettered during the run."""
        if self.amqp_url:
            depths = self._rabbit_depths(dlq=True)
            total = sum(depths.values()) - self.dlq_baseline
            return {"(all DLQs, growth)": max(total, 0)}
        return {q: n for q, n in self._embedded().items() if q.endswith(".dlq")}

    def _embedded(self) -> dict[str, int]:
        path = self.var / "broker.db"
        if not path.exists():
            return {}
        conn = connect(path)
        try:
            rows = conn.execute("SELECT queue, COUNT(*) FROM charter_message GROUP BY queue")
            return {str(q): int(n) for q, n in rows}
        finally:
            conn.close()


# -- the platform -------------------------------------------------------------------------
def supervisor_status(var: Path) -> dict[str, Any]:
    """``<var>/supervisor.json`` (``{}`` while it is being written for the first time)."""
    try:
        found: dict[str, Any] = json.loads((var / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {}
    return found


def alive(pid: int) -> bool:
    """The process runs (not gone, not a zombie)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def uptime(pid: int) -> float | None:
    """Seconds since ``pid`` started (``None``: gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return since_boot - start_ticks / os.sysconf("SC_CLK_TCK")


def all_running(var: Path, components: tuple[str, ...] = KILLABLE) -> bool:
    """Every worker of ``components`` is up (the supervisor restarted what was killed)."""
    comps = supervisor_status(var).get("components", {})
    for name in components:
        pids = comps.get(name, {}).get("pids") or []
        if not pids or not all(alive(p) for p in pids):
            return False
    return True


def ready(url: str, client: httpx.Client) -> bool:
    """``/health/ready`` answers 200."""
    try:
        return client.get(f"{url}/health/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


class Killer(threading.Thread):
    """``kill -9`` a random worker of a random service every ``interval`` seconds (a
    quarter of the time every worker of it, so the service is down until restarted).

    Stops after ``max_kills``, or once ``done`` is set and at least ``min_kills`` were done.
    A process younger than :data:`MIN_UPTIME` is spared, so a kill never counts as a
    crash at start-up (five of those in a row stop ``charter up``).
    """

    def __init__(self, var: Path, rng: random.Random, config: ChaosConfig,
                 done: threading.Event, out: Out) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.var, self.rng, self.config, self.done, self.out = var, rng, config, done, out
        self.kills: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def _finished(self) -> bool:
        limit = self.config.max_kills
        if limit is not None and len(self.kills) >= limit:
            return True
        return self.done.is_set() and len(self.kills) >= self.config.min_kills

    def _victims(self) -> list[tuple[str, int]]:
        comps = supervisor_status(self.var).get("components", {})
        found: list[tuple[str, int]] = []
        for name in KILLABLE:
            for pid in comps.get(name, {}).get("pids") or []:
                up = uptime(pid)
                if up is not None and up >= MIN_UPTIME and alive(pid):
                    found.append((name, pid))
        return found

    def run(self) -> None:
        low, high = self.config.kill_interval
        next_kill = time.monotonic() + self.rng.uniform(low, high)
        while not self.stop.is_set() and not self._finished():
            if time.monotonic() < next_kill:
                self.stop.wait(0.2)
                continue
            victims = self._victims()
            if not victims:
                self.stop.wait(0.5)
                continue
            name, pid = self.rng.choice(victims)
            chosen = [pid]
            siblings = [p for n, p in victims if n == name and p != pid]
            budget = (self.config.max_kills or len(self.kills) + 99) - len(self.kills)
            if siblings and self.rng.random() < WHOLE_COMPONENT and budget > len(siblings):
                chosen += siblings  # the whole component is down for a while
            for victim in chosen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
                    at = time.monotonic() - self.t0
                    self.kills.append((at, name, victim))
                    self.out(f"kill -9 {name} (pid {victim})")
            next_kill = time.monotonic() + self.rng.uniform(low, high)


# -- the workload -------------------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    """A product the run sells, with its stock before the run."""

    id: int
    currency: str
    on_hand: int


def plan(index: int, rng: random.Random, eur: list[Product],
         foreign: Product | None) -> tuple[str, dict[str, Any]]:
    """The kind and request body of checkout ``index`` (mostly good cards)."""
    roll = rng.random()
    token = GOOD_TOKEN
    if roll < 0.08:
        kind, token = "declined", DECLINED_TOKEN
        items = [{"product_id": rng.choice(eur).id, "quantity": rng.randint(1, 3)}]
    elif roll < 0.13:
        product = rng.choice(eur)
        kind = "too_many"
        items = [{"product_id": product.id, "quantity": min(999, product.on_hand + 1
                                                            + rng.randint(0, 5))}]
    elif roll < 0.20 and foreign is not None:
        kind = "foreign"
        body = {"items": [{"product_id": foreign.id, "quantity": rng.randint(1, 2)}],
                "currency": foreign.currency,
                "payment_method": {"type": "token", "token": token}}
        return kind, body
    else:
        kind = "good"
        chosen = rng.sample(eur, k=rng.choice((1, 1, 2)))
        items = [{"product_id": p.id, "quantity": rng.randint(1, 3)} for p in chosen]
    return kind, {"items": items, "payment_method": {"type": "token", "token": token}}


def place(http: httpx.Client, gateway: str, token: str, checkout: Checkout,
          body: dict[str, Any], deadline: float) -> Checkout:
    """POST the checkout, repeating it with the same key through outages, until a 202, a
    final refusal (4xx other than 409/429) or ``deadline`` seconds."""
    end = time.monotonic() + deadline
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": checkout.key}
    delay = 0.2
    while True:
        checkout.attempts += 1
        try:
            r = http.post(f"{gateway}/orders/v2/orders", json=body, headers=headers,
                          timeout=15)
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        else:
            if r.status_code == 202:
                checkout.order_id = str(r.json()["id"])
                checkout.finished = time.monotonic()
                return checkout
            if r.status_code < 500 and r.status_code not in (409, 429):
                checkout.refused = f"{r.status_code} {r.text[:200]}"
                checkout.finished = time.monotonic()
                return checkout
            last = str(r.status_code)
        if time.monotonic() + delay > end:
            checkout.refused = f"gave up after {checkout.attempts} attempts (last: {last})"
            checkout.finished = time.monotonic()
            return checkout
        time.sleep(delay + random.uniform(0, delay / 2))
        delay = min(delay * 2, 2.0)


def create_foreign_product(http: httpx.Client, gateway: str, token: str, run_id: str,
                           category_id: int) -> int:
    """A USD product with 40 units (the seed has only EUR ones): its checkouts convert."""
    headers = {"Authorization": f"Bearer {token}",
               "Idempotency-Key": f"chaos-{run_id}-usd-product"}
    r = http.post(f"{gateway}/catalog/v1/products", headers=headers, json={
        "sku": f"CHAOS-{run_id[:8].upper()}", "name": "Chaos Blend 250 g (USD)",
        "category_id": category_id, "price": 1500, "currency": FOREIGN_CURRENCY})
    r.raise_for_status()
    product_id = int(r.json()["id"])
    r = http.put(f"{gateway}/catalog/v1/products/{product_id}/stock",
                 headers={**headers, "Idempotency-Key": f"chaos-{run_id}-usd-stock"},
                 json={"on_hand": 40})
    r.raise_for_status()
    return product_id


def choose_products(var: Path, rng: random.Random, count: int) -> list[Product]:
    """``count`` EUR products with 20–90 units, so some of them run out during the run."""
    levels = stock_levels(var)
    with database(var, "catalog") as db:
        rows = db.execute("SELECT id, currency FROM products WHERE active = 1 "
                          "AND currency = 'EUR' ORDER BY id").fetchall()
    candidates = [Product(int(r["id"]), str(r["currency"]), levels[int(r["id"])][0])
                  for r in rows if 20 <= levels.get(int(r["id"]), (0, 0))[0] <= 90]
    return sorted(rng.sample(candidates, k=min(count, len(candidates))), key=lambda p: p.id)


def set_fault_phase(var: Path, on: bool) -> None:
    """Latency and a few injected 503s on catalog and payments (``charter.faults``)."""
    from charter.faults import set_faults

    profile = {"*": {"latency_ms": "5-80", "error_rate": 0.05}} if on else None
    before = os.environ.get("CHARTER_VAR_DIR")
    os.environ["CHARTER_VAR_DIR"] = str(var)  # set_faults writes <var>/faults/<svc>.json
    try:
        for service in ("catalog", "payments"):
            set_faults(service, profile)
    finally:
        if before is None:
            os.environ.pop("CHARTER_VAR_DIR", None)
        else:
            os.environ["CHARTER_VAR_DIR"] = before


# -- the invariants -----------------------------------------------------------------------
def check(var: Path, initial: dict[int, int], checkouts: list[Checkout],
          probe: BrokerProbe) -> tuple[list[Invariant], Counter[str]]:
    """Every invariant, computed from the services' databases and the broker."""
    rows: list[Invariant] = []

    def row(name: str, expected: object, actual: object, ok: bool) -> None:
        rows.append(Invariant(name, str(expected), str(actual), ok))

    orders = {r["id"]: r for r in order_rows(var)}
    statuses: Counter[str] = Counter(
        r["status"] if r["status"] != "cancelled" else f"cancelled:{r['rejection_code']}"
        for r in orders.values())
    accepted = [c.order_id for c in checkouts if c.order_id]
    missing = [o for o in accepted if o not in orders]
    row("every accepted checkout is an order", len(accepted), len(accepted) - len(missing),
        not missing)
    unsettled = sorted(o for o, r in orders.items() if not settled(r))
    row("every order terminal (settled)", f"{len(orders)} of {len(orders)}",
        f"{len(orders) - len(unsettled)} of {len(orders)}"
        + (f" (e.g. {', '.join(unsettled[:3])})" if unsettled else ""), not unsettled)

    # stock: initial on_hand == on_hand now + units of confirmed orders; nothing reserved
    confirmed = {o for o, r in orders.items() if r["status"] == "confirmed"}
    sold: dict[int, int] = defaultdict(int)
    with database(var, "orders") as db:
        for line in db.execute("SELECT order_id, product_id, quantity FROM order_lines"):
            if line["order_id"] in confirmed:
                sold[int(line["product_id"])] += int(line["quantity"])
    levels = stock_levels(var)
    for product_id, before in sorted(initial.items()):
        on_hand, reserved = levels.get(product_id, (0, 0))
        row(f"product {product_id}: on_hand + sold + reserved = initial", before,
            f"{on_hand} + {sold[product_id]} + {reserved} = "
            f"{on_hand + sold[product_id] + reserved}",
            on_hand + sold[product_id] + reserved == before)
    unknown_sold = sorted(set(sold) - set(initial))
    row("confirmed orders sell only products of the run", 0, len(unknown_sold),
        not unknown_sold)
    reserved_total = sum(r for _, r in levels.values())
    row("units reserved after settlement (all products)", 0, reserved_total,
        reserved_total == 0)
    with database(var, "catalog") as db:
        reservations = {r["order_id"]: r["status"]
                        for r in db.execute("SELECT order_id, status FROM reservations")}
    held = sorted(o for o, s in reservations.items() if s == HELD)
    row("reservations still held", 0, len(held), not held)
    uncommitted = sorted(o for o in confirmed if reservations.get(o) != "committed")
    row("confirmed orders with a committed reservation", len(confirmed),
        len(confirmed) - len(uncommitted), not uncommitted)
    stray = sorted(o for o, s in reservations.items()
                   if s == "committed" and o not in confirmed)
    row("committed reservations of unconfirmed orders", 0, len(stray), not stray)

    # payments: confirmed → exactly one captured/authorised; cancelled → none
    live: dict[str, list[sqlite3.Row]] = defaultdict(list)
    with database(var, "payments") as db:
        for p in db.execute("SELECT id, order_id, status, amount, currency, captured_amount "
                            "FROM payments WHERE status IN ('captured', 'authorized')"):
            live[p["order_id"]].append(p)
    one = [o for o in confirmed if len(live.get(o, [])) == 1]
    row("confirmed orders with exactly one captured/authorised payment", len(confirmed),
        len(one), len(one) == len(confirmed))
    captured = [o for o in one if live[o][0]["status"] == "captured"
                and (orders[o]["currency"] != live[o][0]["currency"]
                     or live[o][0]["captured_amount"] == orders[o]["total"])]
    row("  … captured, for the order total (same currency)", len(confirmed), len(captured),
        len(captured) == len(confirmed))
    ended = [o for o, r in orders.items() if r["status"] in ("cancelled", "rejected")]
    charged = sorted(o for o in ended if live.get(o))
    row("cancelled orders with a captured/authorised payment", 0, len(charged), not charged)
    orphans = sorted(o for o in live if o not in orders)
    row("captured/authorised payments of unknown orders", 0, len(orphans), not orphans)

    # messaging: nothing left outside the DLQ, and (almost) nothing in it
    outbox = unsent_outbox(var)
    unsent = sum(u for u, _ in outbox.values())
    row("unsent outbox rows (" + ", ".join(sorted(outbox)) + ")", 0, unsent, unsent == 0)
    pending = probe.pending()
    waiting = sum(pending.values())
    row("messages in consumer and retry queues", 0,
        waiting if not waiting else f"{waiting} {({q: n for q, n in pending.items() if n})}",
        waiting == 0)
    published = sum(s for _, s in outbox.values())
    dead = sum(probe.dead().values())
    share = dead / published if published else 0.0
    row("dead-lettered / published", f"< {DLQ_LIMIT:.1%}",
        f"{dead} / {published} = {share:.3%}", share < DLQ_LIMIT and published > 0)
    return rows, statuses


def quiet(var: Path, probe: BrokerProbe) -> str | None:
    """What is still moving (``None``: every order settled, outboxes and queues empty)."""
    unsettled = sum(1 for r in order_rows(var) if not settled(r))
    unsent = sum(u for u, _ in unsent_outbox(var).values())
    queued = sum(probe.pending().values())
    if unsettled or unsent or queued:
        return f"{unsettled} unsettled orders, {unsent} unsent outbox rows, {queued} queued"
    return None


def wait_quiet(var: Path, probe: BrokerProbe, timeout: float, out: Out) -> bool:
    """Poll until :func:`quiet` twice in a row 1 s apart, at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last_report = 0.0
    calm = 0
    while time.monotonic() < end:
        try:
            busy = quiet(var, probe)
        except sqlite3.OperationalError as exc:  # a database busy being migrated/written
            busy = str(exc)
        calm = calm + 1 if busy is None else 0
        if calm >= 2:
            return True
        if busy and time.monotonic() - last_report > 10:
            out(f"  waiting: {busy}")
            last_report = time.monotonic()
        time.sleep(1.0)
    return False


# -- the run ------------------------------------------------------------------------------
def environment(config: ChaosConfig, password: str) -> dict[str, str]:
    """The platform's environment for the run."""
    env = {
        "CHARTER_ENV": "development",
        "GATEWAY_RATE_LIMIT": "0",
        "ORDERS_RECOVERY_INTERVAL": str(config.recovery_interval),
        "ORDERS_CHECKOUT_DEADLINE": str(config.checkout_deadline),
        "DEMO_ALICE_PASSWORD": password,
        "DEMO_CLI_SECRET": secrets.token_urlsafe(24),
        "DEMO_STAFF_PASSWORD": secrets.token_urlsafe(16),
        "DEMO_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "LOG_LEVEL": "WARNING",
    }
    if config.amqp_url:
        env["AMQP_URL"] = config.amqp_url
    return env


def run(config: ChaosConfig, workdir: Path, out: Out = print) -> ChaosReport:
    """Start the platform in ``workdir``, run the checkouts and kills, check the
    invariants; the platform is stopped before returning."""
    from charterctl.user_login import user_token
    from tests.support.platform import running

    t0 = time.monotonic()

    def say(message: str) -> None:
        out(f"[{time.monotonic() - t0:6.1f}s] {message}")

    rng = random.Random(config.seed)
    run_id = uuid.uuid4().hex
    password = secrets.token_urlsafe(16)
    report = ChaosReport()
    say(f"starting the platform in {workdir} "
        f"({'RabbitMQ' if config.amqp_url else 'embedded broker'}, SQLite)")
    with running(workdir, "sqlite", extra_env=environment(config, password)) as platform:
        var = Path(platform.env["CHARTER_VAR_DIR"])
        report.var_dir = var
        gateway = platform.url("gateway")
        probe = BrokerProbe(var, config.amqp_url)
        with httpx.Client(timeout=15) as http:
            admin = platform.token("demo-cli")
            category = 1
            with database(var, "catalog") as db:
                found = db.execute("SELECT category_id FROM products LIMIT 1").fetchone()
                category = int(found[0]) if found else category
            foreign_id = create_foreign_product(http, gateway, admin, run_id, category)
            alice = user_token(platform.url("auth"), ALICE, password,
                               redirect_uri=f"{gateway}/ui/oauth2-redirect.html")
            token = str(alice["access_token"])
        eur = choose_products(var, rng, 8)
        levels = stock_levels(var)
        foreign = Product(foreign_id, FOREIGN_CURRENCY, levels[foreign_id][0])
        initial = {p.id: p.on_hand for p in eur} | {foreign.id: foreign.on_hand}
        say("products " + ", ".join(f"#{p} ({n} on hand)" for p, n in initial.items()))
        plans = [plan(i, rng, eur, foreign) for i in range(config.n)]
        checkouts = [Checkout(i, kind, f"chaos-{run_id}-{i}")
                     for i, (kind, _) in enumerate(plans)]

        done = threading.Event()
        killer = Killer(var, rng, config, done, say)
        say(f"{config.n} checkouts from {config.concurrency} clients, killing "
            f"{', '.join(KILLABLE)} at random")
        started = time.monotonic()
        report.started = killer.t0
        if config.faults:
            set_fault_phase(var, True)
        killer.start()
        limits = httpx.Limits(max_connections=config.concurrency)
        try:
            with httpx.Client(limits=limits) as http, \
                    ThreadPoolExecutor(config.concurrency, thread_name_prefix="client") as pool:
                list(pool.map(lambda c: place(http, gateway, token, c, plans[c.index][1],
                                              config.request_deadline), checkouts))
        finally:
            done.set()
            if config.faults:
                set_fault_phase(var, False)
        report.load_ended = time.monotonic()
        accepted = sum(1 for c in checkouts if c.order_id)
        say(f"{accepted} of {config.n} checkouts accepted in "
            f"{time.monotonic() - started:.1f}s; waiting for the last kills")
        killer.join(timeout=120)
        killer.stop.set()
        report.kills = killer.kills
        report.checkouts = checkouts
        end = time.monotonic() + 90
        while time.monotonic() < end and not all_running(var):
            time.sleep(0.3)
        with httpx.Client() as http:
            # the gateway answers for every service once each is ready again
            while time.monotonic() < end and not ready(gateway, http):
                time.sleep(0.3)
        say("every service is back; waiting until every order is settled and the "
            "queues are drained")
        settle_start = report.settle_started = time.monotonic()
        if wait_quiet(var, probe, config.settle_timeout, say):
            report.settled_after = time.monotonic() - settle_start
        else:
            say(f"not quiet after {config.settle_timeout:.0f}s: checking anyway")
        report.restarts = {name: int(entry.get("restarts", 0)) for name, entry in
                           supervisor_status(var).get("components", {}).items()}
        report.invariants, report.statuses = check(var, initial, checkouts, probe)
        if not report.ok:
            say(diagnose(platform, var, report, token))
    return report


def diagnose(platform: Any, var: Path, report: ChaosReport, token: str) -> str:
    """The event trails of up to three orders that break an invariant (for the report)."""
    unsettled = [r["id"] for r in order_rows(var) if not settled(r)][:3]
    lines = ["chaos: orders to look at (events from GET /orders/v2/orders/{id}/events):"]
    with httpx.Client(timeout=10) as http:
        for order_id in unsettled:
            r = http.get(f"{platform.url('gateway')}/orders/v2/orders/{order_id}/events",
                         headers={"Authorization": f"Bearer {token}"},
                         params={"limit": 100})
            events = r.json().get("items", []) if r.status_code == 200 else r.text[:300]
            lines.append(f"  {order_id}: {json.dumps(events)[:2000]}")
    return "\n".join(lines)


def table(report: ChaosReport) -> str:
    """The invariant table (Markdown)."""
    width = max((len(i.name) for i in report.invariants), default=9)
    lines = [f"| {'invariant':<{width}} | expected | actual | ok |",
             f"| {'-' * width} | --- | --- | --- |"]
    for i in report.invariants:
        lines.append(f"| {i.name:<{width}} | {i.expected} | {i.actual} | "
                     f"{'yes' if i.ok else 'NO'} |")
    return "\n".join(lines)


def summary(report: ChaosReport) -> str:
    """What happened: checkouts by kind and outcome, kills, restarts, settlement time."""
    kinds = Counter(c.kind for c in report.checkouts)
    refused = Counter((c.refused or "")[:60] for c in report.checkouts if not c.order_id)
    attempts = sum(c.attempts for c in report.checkouts)
    killed = Counter(name for _, name, _ in report.kills)
    lines = [
        "checkouts: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        + f"; {attempts} POSTs in all",
        "orders: " + ", ".join(f"{k} {n}" for k, n in sorted(report.statuses.items())),
        f"kills: {len(report.kills)} (" + ", ".join(f"{k} {n}" for k, n in
                                                    sorted(killed.items())) + ")",
        "restarts (supervisor.json): " + ", ".join(f"{k} {n}" for k, n in
                                                   sorted(report.restarts.items()) if n),
        "settled after: " + (f"{report.settled_after:.1f}s" if report.settled_after is not None
                             else "never (bounded wait ran out)"),
    ]
    if refused:
        lines.append("not accepted: " + "; ".join(f"{n}× {k}" for k, n in refused.items()))
    return "\n".join(lines)


def as_json(report: ChaosReport, config: ChaosConfig) -> dict[str, Any]:
    """The run for ``--json``: the invariant rows, the kills and the checkouts answered per
    second by outcome (times in seconds since the load started), the settle time."""
    zero = report.started if report.started is not None else 0.0

    def since(moment: float | None) -> float | None:
        return None if moment is None or report.started is None else round(moment - zero, 2)

    per_second: dict[int, Counter[str]] = defaultdict(Counter)
    for c in report.checkouts:
        at = since(c.finished)
        if at is not None:
            per_second[max(0, int(at))][c.outcome] += 1
    last = max(per_second, default=-1)
    outcomes = ("accepted", "refused", "gave_up")
    return {
        "n": config.n,
        "concurrency": config.concurrency,
        "broker": "rabbitmq" if config.amqp_url else "embedded",
        "faults": config.faults,
        "ok": report.ok,
        "invariants": [{"name": i.name, "expected": i.expected, "actual": i.actual,
                        "ok": i.ok} for i in report.invariants],
        "kills": [{"t": round(at, 2), "service": name, "pid": pid}
                  for at, name, pid in report.kills],
        "restarts": dict(report.restarts),
        "statuses": dict(report.statuses),
        "checkouts": {o: sum(1 for c in report.checkouts if c.outcome == o) for o in outcomes},
        "attempts": sum(c.attempts for c in report.checkouts),
        "seconds": [{"t": t, **{o: per_second[t][o] for o in outcomes}}
                    for t in range(last + 1)],
        "load_ended_s": since(report.load_ended),
        "settle_started_s": since(report.settle_started),
        "settled_after_s": (round(report.settled_after, 2)
                            if report.settled_after is not None else None),
    }


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, parsed."""
    p = argparse.ArgumentParser(prog="python -m tests.chaos.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="checkouts (default 200)")
    p.add_argument("--concurrency", "-c", type=int, default=10, help="clients (default 10)")
    p.add_argument("--min-kills", type=int, default=3,
                   help="kill at least this many processes (default 3)")
    p.add_argument("--max-kills", type=int, default=None, help="and at most this many")
    p.add_argument("--kill-interval", type=float, nargs=2, default=(2.0, 6.0),
                   metavar=("MIN", "MAX"), help="seconds between kills (default 2 6)")
    p.add_argument("--no-faults", action="store_true",
                   help="no injected latency/errors on catalog and payments")
    p.add_argument("--amqp", nargs="?", const=os.environ.get(
        "TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"), default=os.environ.get(
        "CHAOS_AMQP_URL"), metavar="URL", help="use RabbitMQ (default the local one)")
    p.add_argument("--seed", type=int, default=None, help="random seed (workload, kills)")
    p.add_argument("--settle-timeout", type=float, default=180.0)
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the run's files here (default: a temporary directory)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the run as JSON here (for make report)")
    a = p.parse_args(argv)
    if a.n < 1 or a.concurrency < 1 or a.min_kills < 0:
        p.error("--n and --concurrency must be at least 1, --min-kills at least 0")
    return a


def configuration(a: argparse.Namespace) -> tuple[ChaosConfig, Path | None]:
    """The run's configuration and work directory from the parsed command line."""
    low, high = a.kill_interval
    config = ChaosConfig(n=a.n, concurrency=a.concurrency, min_kills=a.min_kills,
                         max_kills=a.max_kills, kill_interval=(low, high),
                         faults=not a.no_faults, amqp_url=a.amqp, seed=a.seed,
                         settle_timeout=a.settle_timeout)
    return config, a.workdir


def parse(argv: list[str] | None) -> tuple[ChaosConfig, Path | None]:
    """The command line: the run's configuration and work directory."""
    return configuration(arguments(argv))


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when every invariant holds, 1 otherwise."""
    args = arguments(argv)
    config, workdir = configuration(args)
    if config.amqp_url:
        from kombu import Connection

        conn = Connection(config.amqp_url, connect_timeout=3)
        try:
            conn.connect()
        except Exception as exc:
            print(f"chaos: RabbitMQ unavailable: {type(exc).__name__}", file=sys.stderr)
            return 2
        finally:
            conn.release()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        workdir.mkdir(parents=True, exist_ok=True)
        report = run(config, workdir)
        print()
        print(summary(report))
        print()
        print(table(report))
        print()
        print("chaos: every invariant holds" if report.ok else "chaos: INVARIANTS FAIL")
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(as_json(report, config), indent=2) + "\n")
            print(f"chaos: JSON in {args.json}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
