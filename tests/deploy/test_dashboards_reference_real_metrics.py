"""Every metric a Grafana dashboard or a Prometheus rule references is one the running
platform really exports, with the labels the query matches on.

The platform runs (``charter up``, 2 workers per component, mTLS), takes traffic through
the gateway (reads on every API, a cart, a v2 checkout, a deprecated v1 call, and a
moment of injected catalog failures that trips cart's breaker), and every component's
``/metrics`` is scraped with Prometheus' own certificate. The expressions are parsed
(``tests/deploy/promql_refs.py``); recording-rule names are checked against the rule
files, the few series no Charter process exports (``up``, ``ALERTS``, node_exporter's)
against :data:`promql_refs.EXTERNAL`.
"""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
import yaml

from tests.deploy import promql_refs
from tests.deploy import stack as deploy
from tests.support.platform import Platform
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

GRAFANA = promql_refs.ROOT / "deploy" / "grafana"


def test_references_are_parsed_from_every_dashboard_and_rule_file() -> None:
    refs = promql_refs.all_references()
    boards = {r.where.split(":")[0] for r in refs}
    assert boards >= {"platform-overview.json", "resilience.json", "messaging.json",
                      "saga-business.json", "caches.json", "slo-burn.json",
                      "slo-rules.yaml", "slo-alerts.yaml", "operational-alerts.yaml"}
    names = {r.metric for r in refs}
    assert {"charter_http_request_duration_seconds_bucket", "charter_saga_outcomes_total",
            "charter:slo_errors:ratio_rate1h", "charter_client_breaker_state"} <= names


def test_the_check_reports_a_missing_metric_and_a_wrong_label() -> None:
    """The checker bites: a typo in a name or in a label is reported."""
    refs = (promql_refs.selectors('sum(rate(charter_http_request_total{status="500"}[5m]))',
                                  "typo.json")
            + promql_refs.selectors('sum by (x) (charter_dlq_messages{queues="q"})',
                                    "label.json")
            + promql_refs.selectors('up{job="charter"} + charter:slo_errors:ratio_rate5m',
                                    "fine.json"))
    seen = {"charter_http_requests_total": {"service", "status"},
            "charter_dlq_messages": {"service", "queue"}}
    found = promql_refs.problems(refs, seen, {"charter:slo_errors:ratio_rate5m"})
    assert found == ["charter_dlq_messages: no label ['queues'] (label.json)",
                     "charter_http_request_total: not exported by any service (typo.json)"]


def test_grafana_variables_are_replaced_before_parsing() -> None:
    expr = promql_refs.grafana_to_promql(
        'rate(x_total{service=~"$service",a="${var}"}[$__rate_interval]) '
        '/ increase(y_total[$__range])')
    assert [r.metric for r in promql_refs.selectors(expr, "t")] == ["x_total", "y_total"]


def test_dashboards_are_provisionable() -> None:
    """Unique uids, the datasource variable on every Prometheus query, and provisioning
    files pointing at the compose hostnames."""
    uids = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        uids.append(doc["uid"])
        assert doc["templating"]["list"][0]["name"] == "datasource", path.name
        for panel in promql_refs._panels(doc["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
    assert len(uids) == len(set(uids)) == 6
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "charter.yaml")
                             .read_text(encoding="utf-8"))["datasources"]
    assert {s["uid"]: s["url"] for s in sources} == {
        "prometheus": "http://prometheus:9090", "loki": "http://loki:3100",
        "jaeger": "http://jaeger:16686"}
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "charter.yaml")
                               .read_text(encoding="utf-8"))["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_referenced_metric_is_exported_after_traffic(deploy_platform: Platform) -> None:
    refs = promql_refs.all_references()
    recorded = promql_refs.recorded_names()
    with httpx.Client(timeout=15) as http:
        headers = deploy.login(deploy_platform)
        deploy.drive(deploy_platform, http, headers)
        deploy.trip_a_breaker(deploy_platform, http, headers)  # cart → catalog opens
    missing: list[str] = []

    def all_there() -> bool:  # loyalty awards points asynchronously, after the checkout
        nonlocal missing
        missing = promql_refs.problems(refs, promql_refs.exported(
            deploy.scrape_all(deploy_platform)), recorded)
        return not missing

    with contextlib.suppress(AssertionError):  # the assertion below says what is missing
        wait_until(all_there, timeout=30, interval=2, what="every referenced metric")
    assert not missing, ("dashboards/rules reference what the platform does not export:\n"
                         + "\n".join(missing))
