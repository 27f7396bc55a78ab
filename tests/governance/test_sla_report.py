"""``charter gov sla report``: from two scrapes of a real /metrics endpoint, and from
Prometheus API answers served by a stub HTTP server."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from charter.observability.middleware import ObservabilityMiddleware, RequestMetrics
from charterctl.cli import main
from governance.sla import model, report
from tests.support.stub_server import Seen


@pytest.fixture(scope="module")
def policy() -> model.Policy:
    return model.load()


@pytest.fixture(scope="module")
def objectives(policy: model.Policy) -> list[model.Objective]:
    return model.objectives(policy)


def objective(objectives: list[model.Objective], service: str, cls: str) -> model.Objective:
    return next(o for o in objectives if (o.service, o.slo_class) == (service, cls))


# -- grading ---------------------------------------------------------------------------------


def test_quantile_interpolates_like_histogram_quantile():
    buckets = {0.1: 50.0, 0.25: 90.0, 0.5: 100.0, math.inf: 100.0}
    assert report.quantile(0.5, buckets) == pytest.approx(0.1)
    assert report.quantile(0.99, buckets) == pytest.approx(0.25 + 0.25 * 9 / 10)
    assert report.quantile(0.99, {0.1: 0.0, math.inf: 10.0}) == 0.1  # rank in +Inf
    assert report.quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None


@pytest.mark.parametrize(("errors", "slow", "status"), [
    (0, 0, "met"),
    (4, 0, "at risk"),        # 0.04 % of 10,000: 80 % of catalog read's 0.05 % budget
    (6, 0, "breached"),       # 0.06 % > 0.05 %
    (0, 80, "at risk"),       # 0.8 % slower than 50 ms: 80 % of the 1 % latency budget
    (0, 101, "breached"),     # p99 above the target
])
def test_grade(objectives, policy, errors, slow, status):
    read = objective(objectives, "catalog", "read")
    counts = report.Counts(total=10_000, errors=errors,
                           buckets={0.05: 10_000.0 - slow, 0.1: 10_000.0, math.inf: 10_000.0})
    result = report.grade(read, counts, policy.report.at_risk_budget)
    assert result.status == status
    assert result.availability_budget_used == pytest.approx(errors / 10_000 / 0.0005)


def test_ceiling_breaches_even_with_budget_left(objectives, policy):
    write = objective(objectives, "cart", "write")  # budget 0.5 %, ceiling 5 %
    counts = report.Counts(total=100, errors=6, buckets={0.5: 100.0, math.inf: 100.0})
    assert report.grade(write, counts, 1 - 1e-9).status == "breached"
    assert report.grade(write, report.Counts(), 0.75).status == "no traffic"


# -- a real /metrics endpoint ----------------------------------------------------------------


def metered_app() -> Any:
    """A tiny ASGI app behind the platform's real ObservabilityMiddleware and metrics.

    Routing sets the operationId the way Connexion's routing middleware does; ``/metrics``
    serves the registry in the text format the services expose.
    """
    registry = CollectorRegistry()
    routes = {"/products/1": ("get_product", 200), "/broken": ("list_products", 500)}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/metrics":
            body, status = generate_latest(registry), 200
        else:
            operation, status = routes[scope["path"]]
            scope["extensions"]["connexion_routing"] = {"operation_id": operation}
            body = b"{}"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    return ObservabilityMiddleware(app, RequestMetrics(registry, "catalog"))


def test_report_from_two_scrapes_of_a_real_metrics_endpoint(asgi_server, objectives, policy):
    server = asgi_server(metered_app())
    catalog = [o for o in objectives if o.service == "catalog"]

    def traffic(_seconds: float) -> None:  # what happens between the two scrapes
        with httpx.Client(base_url=server.url) as client:
            for _ in range(150):
                assert client.get("/products/1").status_code == 200
            for _ in range(3):
                assert client.get("/broken").status_code == 500

    with httpx.Client(base_url=server.url) as client:
        client.get("/products/1")  # before the window: not counted
        counts = report.from_scrapes(catalog, [server.url + "/metrics"], 60, client,
                                     wait=traffic)
    read = counts[("catalog", "read")]
    assert (read.total, read.errors) == (153, 3)
    assert read.buckets[math.inf] == 153
    rows = {r.slo_class: r for r in report.results(policy, catalog, counts)}
    assert rows["read"].status == "breached"               # 1.96 % 5xx vs a 0.05 % budget
    assert rows["read"].error_rate_pct == pytest.approx(300 / 153)
    assert rows["read"].p99_ms is not None and rows["read"].p99_ms <= 50
    assert rows["write"].status == "no traffic"
    text = report.table(list(rows.values()), "60s")
    assert "catalog  read" in text and "breached" in text


def test_counter_reset_between_scrapes_counts_the_new_value():
    key = ("charter_http_requests_total", (("status", "200"),))
    assert report.increase({key: 100.0}, {key: 7.0}) == {key: 7.0}
    assert report.increase({key: 100.0}, {key: 130.0}) == {key: 30.0}


# -- Prometheus (recorded API answers from a stub server) -------------------------------------

#: Recorded from Prometheus 2.42 (Debian) scraping, every second, an app behind the real
#: ObservabilityMiddleware as service "orders" while a script drove it for 45 s: 50 POST
#: place_order (202) a second, one 409 a second and one 503 every other second; 30 GET
#: get_order (200) a second and one 300 ms get_order every other second. Queries as
#: ``report.prometheus_queries(objective, "1m")``, evaluated at ``time=1796021020``.
RECORDED_AT = "1796021020"
RECORDED: dict[tuple[str, str], list[tuple[dict[str, str], str]]] = {
    ("checkout", "status"): [({"status": "202"}, "2264.898645577675"),
                             ({"status": "409"}, "45.297972911553494"),
                             ({"status": "503"}, "22.39898645577675")],
    ("checkout", "le"): [({"le": "+Inf"}, "2333.345604945005"),
                         ({"le": "0.001"}, "2311.2033906008546"),
                         ({"le": "0.0025"}, "2318.250795382238"),
                         ({"le": "0.005"}, "2328.3185164985002"),
                         *(({"le": le}, "2333.345604945005") for le in
                           ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"))],
    ("read", "status"): [({"status": "200"}, "1382.0881738023818")],
    ("read", "le"): [({"le": "+Inf"}, "1382.0881738023818"),
                     ({"le": "0.001"}, "1349.8782383419689"),
                     ({"le": "0.0025"}, "1349.8782383419689"),
                     ({"le": "0.005"}, "1357.9324152349786"),
                     *(({"le": le}, "1358.939187346605") for le in
                       ("0.01", "0.025", "0.05", "0.1", "0.25")),
                     *(({"le": le}, "1382.0881738023818") for le in
                       ("0.5", "1.0", "2.5", "5.0"))],
}
#: Prometheus' own ``histogram_quantile(0.99, <the "le" query>)`` at the same time
PROMETHEUS_P99 = {"checkout": 0.0009994845794575485, "read": 0.3507398826680066}


def vector(rows: list[tuple[dict[str, str], str]]) -> dict[str, Any]:
    """An instant-query answer, as /api/v1/query returns it."""
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": metric, "value": [int(RECORDED_AT), value]} for metric, value in rows]}}


@pytest.fixture
def prometheus(stub_server, objectives):
    """A stub Prometheus answering the recorded queries (others: an empty vector)."""
    answers: dict[str, dict[str, Any]] = {}
    for obj in objectives:
        if obj.service == "orders":
            for kind, promql in zip(("status", "le"), report.prometheus_queries(obj, "1m"),
                                    strict=True):
                answers[promql] = vector(RECORDED.get((obj.slo_class, kind), []))

    def answer(seen: Seen) -> tuple[int, Any]:
        url = urlsplit(seen.path)
        params = parse_qs(url.query)
        assert url.path == "/api/v1/query" and params["time"] == [RECORDED_AT]
        return 200, answers.get(params["query"][0], vector([]))

    return stub_server(answer)


def test_report_from_recorded_prometheus_answers(prometheus, objectives, policy, capsys):
    orders = [o for o in objectives if o.service == "orders"]
    with httpx.Client() as client:
        counts = report.from_prometheus(orders, prometheus.url, "1m", client, at=RECORDED_AT)
    rows = {r.slo_class: r for r in report.results(policy, orders, counts)}
    checkout, read = rows["checkout"], rows["read"]
    # 503s are errors, the 409s are not: 22.4 of 2,332.6 = 0.96 % against a 0.1 % budget
    assert checkout.requests == pytest.approx(2332.5956, abs=1e-3)
    assert checkout.error_rate_pct == pytest.approx(0.9603, abs=1e-3)
    assert checkout.status == "breached"
    assert checkout.latency_budget_used == 0
    # one request in 60 took 300 ms: 1.7 % slower than the 250 ms target, p99 above it
    assert read.availability_pct == 100
    assert read.status == "breached"
    assert read.latency_budget_used == pytest.approx(100 * (1 - 1358.939187346605
                                                             / 1382.0881738023818))
    for cls, expected in PROMETHEUS_P99.items():  # the same estimate as Prometheus'
        assert rows[cls].p99_ms == pytest.approx(expected * 1000, rel=1e-9)
    assert rows["write"].status == "no traffic"

    assert main(["gov", "sla", "report", "--prometheus", prometheus.url, "--window", "1m",
                 "--at", RECORDED_AT, "--service", "orders"]) == 0
    out = capsys.readouterr().out
    assert "SLO report over the last 1m" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("orders")}
    assert lines["checkout"].endswith("breached") and "960% / 0%" in lines["checkout"]
    assert lines["write"].endswith("no traffic")


def test_buckets_extrapolated_past_inf_are_made_monotonic(objectives, policy):
    """increase() extrapolates each bucket alone: recorded once, le=0.001 > le=+Inf."""
    buckets = {0.001: 2338.748541666667, 0.0025: 2345.8818333333334, 0.005: 2356.07225,
               0.5: 2340.0, math.inf: 2332.7525833333334}
    fixed = report.monotonic(buckets)
    assert list(fixed.values()) == sorted(fixed.values())
    checkout = objective(objectives, "orders", "checkout")
    result = report.grade(checkout, report.Counts(total=2332.75, errors=0, buckets=buckets),
                          policy.report.at_risk_budget)
    assert result.latency_budget_used == 0 and result.status == "met"
    assert result.p99_ms is not None and 0 < result.p99_ms <= 1  # rank 0.99 in (0, 1 ms]


def test_prometheus_errors_are_reported(stub_server, capsys):
    stub = stub_server(lambda seen: (400, {"status": "error", "errorType": "bad_data",
                                           "error": "parse error"}))
    assert main(["gov", "sla", "report", "--prometheus", stub.url, "--service", "cart"]) == 2
    assert "bad_data parse error" in capsys.readouterr().err
