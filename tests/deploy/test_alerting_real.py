"""The alerting chain for real: an induced error-rate breach pages through Prometheus and
Alertmanager to a Slack-compatible webhook, and the page resolves once the fault is gone.

On this machine: the running platform (``charter up``, mTLS), Prometheus and Alertmanager
from Debian's packages (``make alerting`` installs them; skipped on a laptop without them,
failed with ``CI=true``), and a local webhook receiver. Prometheus runs
deploy/prometheus/prometheus.yml (targets moved to 127.0.0.1, the platform's PKI,
1 s intervals) with every production rule file, the SLO windows shortened
(5m→4s … 3d→12s, ``for:`` → 1 s; names and thresholds unchanged); Alertmanager runs
deploy/alertmanager/alertmanager.yml with the webhook URL file pointing at the receiver.

1. Prometheus scrapes every component with its own certificate (``up`` = 1 for all 9).
2. Traffic: catalog reads through the gateway, ~20 per second, all along.
3. Fault: half of catalog's answers become injected 503s (``/_charter/faults``).
4. The webhook receives ``[FIRING:1] SLOBudgetBurnFast catalog availability read``.
5. Fault cleared: the webhook receives the same alert ``[RESOLVED]``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy import alerting
from tests.deploy import stack as deploy
from tests.support.platform import COMPONENTS, Platform
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

FIRING_WITHIN = 40.0    # seconds from the fault to the webhook (windows 4–12 s, 1 s steps)
RESOLVED_WITHIN = 40.0  # seconds from clearing the fault to the resolved notification
#: Alertmanager's Slack title names the group labels in label order (alertname, service,
#: sli, slo_class), then the other common labels: "[FIRING:1] SLOBudgetBurnFast catalog
#: availability read (charter page)".
ALERT = ("SLOBudgetBurnFast catalog availability read",)


class Traffic(threading.Thread):
    """Catalog reads through the gateway until stopped; counts answers by status."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                try:
                    status = http.get(self.url, headers=self.headers,
                                      params={"page_size": 5}).status_code
                except httpx.HTTPError:
                    status = 0
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.stop.wait(0.05)


def diagnose(prom_url: str, hook: alerting.Receiver, traffic: Traffic) -> str:
    """What Prometheus computed and the webhook got, for a failure message."""
    lines = [f"traffic: {traffic.statuses}", f"webhook: {hook.texts()}"]
    for promql in ('ALERTS{service="catalog"}',
                   'charter:slo_errors:ratio_rate5m{service="catalog",slo_class="read"}',
                   'charter:slo_errors:ratio_rate1h{service="catalog",slo_class="read"}',
                   'sum by (status) (rate(charter_http_requests_total{service="catalog"}[4s]))'):
        try:
            found = [(r["metric"], r["value"][1]) for r in alerting.query(prom_url, promql)]
        except httpx.HTTPError as exc:
            found = [({"error": str(exc)}, "")]
        lines.append(f"{promql} -> {found}")
    return "\n".join(lines)


def test_an_error_rate_breach_pages_and_resolves(deploy_platform: Platform,
                                                 tmp_path: Path) -> None:
    token = deploy_platform.token("demo-cli")
    traffic = Traffic(f"{deploy.gateway(deploy_platform)}/catalog/v1/products",
                      {"Authorization": f"Bearer {token}"})
    with alerting.webhook_receiver() as hook, \
            alerting.alertmanager(tmp_path, hook.url) as am_url, \
            alerting.prometheus(alerting.prometheus_config(deploy_platform, tmp_path, am_url),
                                tmp_path) as prom_url:
        def all_up() -> bool:
            up = alerting.query(prom_url, 'up{job="charter"} == 1')
            return len(up) == len(COMPONENTS)

        wait_until(all_up, timeout=20, interval=0.5,
                   what=f"Prometheus scraping all {len(COMPONENTS)} components over mTLS")
        traffic.start()
        try:
            time.sleep(3)  # a few clean samples first: the alert must come from the fault
            assert hook.find(*ALERT) is None, hook.texts()
            started = time.monotonic()
            deploy.set_faults(deploy_platform, "catalog", {"*": {"error_rate": 0.5}})
            try:
                try:
                    wait_until(lambda: hook.find("[FIRING:", *ALERT), timeout=FIRING_WITHIN,
                               interval=0.5, what=f"{ALERT[0]} firing at the webhook")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{diagnose(prom_url, hook, traffic)}") from None
                fired = time.monotonic() - started
            finally:
                deploy.set_faults(deploy_platform, "catalog", None)
            cleared = time.monotonic()
            try:
                wait_until(lambda: hook.find("[RESOLVED]", *ALERT), timeout=RESOLVED_WITHIN,
                           interval=0.5, what=f"{ALERT[0]} resolved at the webhook")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{diagnose(prom_url, hook, traffic)}") from None
            resolved = time.monotonic() - cleared
        finally:
            traffic.stop.set()
            traffic.join(timeout=10)
    firing = hook.find("[FIRING:", *ALERT)
    assert firing is not None and "page)" in firing, firing  # severity, a common label
    assert traffic.statuses.get(503, 0) > 0 and traffic.statuses.get(200, 0) > 0, \
        traffic.statuses
    print(f"\nfired {fired:.1f}s after the fault, resolved {resolved:.1f}s after clearing; "
          f"traffic {traffic.statuses}; {len(hook.messages)} webhook messages")
