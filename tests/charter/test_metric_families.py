"""The metric families every service shares: readiness bodies, the process-wide families on
an app's /metrics (one process) and their sum over worker processes (several)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from charter.config import ROOT
from charter.messaging import runtime
from charter.observability import families
from charter.observability.health import Degraded, readiness
from charter.testing import TokenFactory
from tests.support.metrics import sample, samples

# -- readiness ------------------------------------------------------------------------------


def _down() -> None:
    raise ConnectionError("refused (test)")


def _degraded() -> None:
    raise Degraded("cache-bypassed")


def test_readiness_lists_each_dependency_and_is_ready_unless_one_is_down() -> None:
    body, ok = readiness("svc", {"database": lambda: None, "redis": _degraded})
    assert ok is True
    assert body == {"status": "ok", "service": "svc",
                    "checks": {"database": "ok", "redis": "degraded"},
                    "dependencies": {"database": {"status": "up"},
                                     "redis": {"status": "degraded",
                                               "reason": "cache-bypassed"}}}
    body, ok = readiness("svc", {"database": lambda: None, "broker": _down})
    assert ok is False and body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "broker": "failed"}
    assert body["dependencies"]["broker"] == {"status": "down"}
    assert "refused" not in str(body)  # what went wrong goes to the log only


# -- one process: the app's /metrics ---------------------------------------------------------


def test_the_messaging_families_are_left_to_their_own_forwarder() -> None:
    assert families.MESSAGING_PREFIXES == runtime.METRIC_PREFIXES


def test_process_families_are_forwarded_but_not_the_messaging_ones() -> None:
    source = CollectorRegistry()
    Counter("charter_cache_requests_total", "x", ["service"], registry=source).labels("a").inc()
    Counter("charter_outbox_published_total", "x", ["service"], registry=source).labels("a")
    Counter("other_total", "x", registry=source).inc()
    app_registry = CollectorRegistry()
    app_registry.register(families.ProcessFamilies(source))
    names = {family.name for family in app_registry.collect()}
    assert names == {"charter_cache_requests"}


def test_a_service_metrics_page_has_every_family_once_each_with_a_service_label(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charter.cache import TTLCache
    from charter.db import Database
    from services.catalog.app import create_app

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    families.count_cache("catalog", "product", hit=True)  # a process-wide family exists
    tokens = TokenFactory()
    app = create_app(db=Database(f"sqlite:///{tmp_path / 'c.db'}"), verifier=tokens.verifier(),
                     cache=TTLCache())
    with app.test_client() as client:
        client.get("/v1/products", headers={"Authorization": f"Bearer {tokens.token()}"})
        page = client.get("/metrics").text
    found = samples(page)
    names = [line.split()[2] for line in page.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names)), "a family is exported twice"
    assert {"charter_cache_requests_total", "charter_http_requests_total"} <= set(names)
    unlabelled = {name for name, labels in found
                  if name.startswith("charter_") and "service" not in dict(labels)}
    assert unlabelled == set()


def test_token_cache_counts_a_miss_then_hits() -> None:
    tokens = TokenFactory()
    verifier = tokens.verifier()
    token = tokens.token()
    service = families.process_service()

    def value(result: str) -> float:
        labels = {"service": service, "cache": "tokens", "result": result}
        return REGISTRY.get_sample_value("charter_cache_requests_total", labels) or 0.0

    misses, hits = value("miss"), value("hit")
    for _ in range(3):
        verifier.verify(token)
    assert (value("miss") - misses, value("hit") - hits) == (1, 2)


# -- several processes: one scrape sums every worker ----------------------------------------

WORKER = """
import sys
from charter.observability import families, metrics_exposition
from services.loyalty import metrics as loyalty
from services.orders import metrics as orders

metrics_exposition.mark_dead_at_exit()  # as every service process does
n = int(sys.argv[1])
for _ in range(n):
    families.count_cache("catalog", "product", hit=True)
orders.SAGA_OUTCOMES.labels("orders", "confirmed", "").inc(n)
orders.SAGA_DURATION.labels("orders", "confirmed").observe(0.5)
orders.REVENUE.labels("orders", "EUR").inc(100 * n)
loyalty.set_pending(int(sys.argv[2]))
print("ready", flush=True)
if sys.argv[3] == "stay":
    sys.stdin.read()  # alive until the test closes stdin
"""

SCRAPE = """
import sys
from charter.cache import TTLCache
from charter.db import Database
from charter.testing import TokenFactory
from services.catalog.app import create_app

app = create_app(db=Database(sys.argv[1]), verifier=TokenFactory().verifier(),
                 cache=TTLCache())
with app.test_client() as client:
    sys.stdout.write(client.get("/metrics").text)
"""


def test_one_scrape_sums_two_worker_processes(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    def run(*args: str, stay: bool = False) -> Any:
        return subprocess.Popen([sys.executable, "-c", *args], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE if stay else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, text=True)

    gone = run(WORKER, "3", "9", "exit")  # a worker (the old leader) that exited
    assert gone.communicate(timeout=60)[0].strip() == "ready" and gone.returncode == 0
    alive = run(WORKER, "4", "5", "stay", stay=True)
    try:
        assert alive.stdout.readline().strip() == "ready"
        scrape = run(SCRAPE, f"sqlite:///{tmp_path / 'scrape.db'}")
        page, _ = scrape.communicate(timeout=60)
        assert scrape.returncode == 0
    finally:
        alive.communicate(input="", timeout=60)
    assert sample(page, "charter_cache_requests_total", service="catalog", cache="product",
                  result="hit") == 7
    assert sample(page, "charter_saga_outcomes_total", service="orders", outcome="confirmed",
                  reason="") == 7
    assert sample(page, "charter_saga_duration_seconds_count", service="orders",
                  outcome="confirmed") == 2
    assert sample(page, "charter_revenue_minor_total", service="orders", currency="EUR") == 700
    # livemax: the live worker's value; the exited worker's 9 left with it
    assert sample(page, "charter_loyalty_pending_awards", service="loyalty") == 5
