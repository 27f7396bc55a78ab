"""``charter gov sla report``: each objective measured over a window, graded.

Two sources give the same :class:`Counts` per objective:

- :func:`from_prometheus`: ``increase(…[window])`` over Prometheus' HTTP API;
- :func:`from_scrapes`: two scrapes of the components' ``/metrics`` a window apart, parsed
  with ``prometheus_client.parser`` and subtracted (a counter that went down was reset: its
  second value is the increase).

Grading (:func:`grade`): *breached* when the window's 5xx share is above the error budget or
the ceiling, or more than 1 % of requests were slower than the p99 target; *at risk* when
either SLI used at least ``report.at_risk_budget`` of the window's budget; *met* otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from governance.sla.model import Objective, Policy
from governance.sla.rules import ERRORS, Sli, sli

#: a series: (metric sample name, sorted label pairs)
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SeriesKey, float]


class ReportError(RuntimeError):
    """A source could not be read (unreachable, not Prometheus, bad answer)."""


@dataclass
class Counts:
    """What happened to one objective's requests over the window."""

    total: float = 0.0
    errors: float = 0.0
    #: cumulative histogram buckets: upper bound (seconds, ``inf`` last) → requests
    buckets: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One graded objective."""

    service: str
    slo_class: str
    requests: float
    availability_pct: float | None
    error_rate_pct: float | None
    p99_ms: float | None
    slow_pct: float | None
    availability_budget_used: float | None
    latency_budget_used: float | None
    status: str
    target_availability_pct: float
    target_p99_ms: float
    ceiling_pct: float


def monotonic(buckets: Mapping[float, float]) -> dict[float, float]:
    """Cumulative buckets made non-decreasing (a running maximum), as ``histogram_quantile``
    does: ``increase()`` extrapolates each bucket series on its own, so a real Prometheus
    answers e.g. ``le="0.001"`` with more requests than ``le="+Inf"``."""
    out: dict[float, float] = {}
    running = 0.0
    for bound in sorted(buckets):
        running = max(running, buckets[bound])
        out[bound] = running
    return out


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """``histogram_quantile`` on cumulative buckets: linear inside the bucket that holds
    rank ``q``; the highest finite bound when the rank lies in ``+Inf``; None when empty."""
    buckets = monotonic(buckets)
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]) or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def grade(obj: Objective, counts: Counts, at_risk: float) -> Result:
    """Grade ``obj`` on ``counts``."""
    total = counts.total
    buckets = monotonic(counts.buckets)
    observed = buckets.get(math.inf, 0.0)
    threshold = next((v for b, v in buckets.items()
                      if abs(b - obj.latency_seconds) < 1e-9), None)
    err = min(counts.errors / total, 1.0) if total > 0 else None
    slow = 1 - threshold / observed if observed > 0 and threshold is not None else None
    p99 = quantile(0.99, buckets)
    used_avail = err / obj.error_budget if err is not None else None
    used_lat = slow / obj.latency_budget if slow is not None else None
    used = [u for u in (used_avail, used_lat) if u is not None]
    if not used:
        status = "no traffic"
    elif (err is not None and err > obj.error_rate_ceiling) or max(used) > 1:
        status = "breached"
    elif max(used) >= at_risk:
        status = "at risk"
    else:
        status = "met"
    return Result(
        service=obj.service, slo_class=obj.slo_class, requests=total,
        availability_pct=None if err is None else (1 - err) * 100,
        error_rate_pct=None if err is None else err * 100,
        p99_ms=None if p99 is None else p99 * 1000,
        slow_pct=None if slow is None else slow * 100,
        availability_budget_used=used_avail, latency_budget_used=used_lat, status=status,
        target_availability_pct=obj.availability_pct, target_p99_ms=obj.latency_p99_ms,
        ceiling_pct=obj.error_rate_ceiling_pct,
    )


# -- counting from samples ------------------------------------------------------------------


def count(source: Sli, samples: Samples) -> Counts:
    """The :class:`Counts` of one objective from per-series increases."""
    counts = Counts()
    for (name, pairs), value in samples.items():
        labels = dict(pairs)
        if not source.holds(labels):
            continue
        if name == source.requests:
            counts.total += value
            if ERRORS.holds(labels):
                counts.errors += value
        elif name == source.latency + "_bucket":
            bound = float(labels["le"])
            counts.buckets[bound] = counts.buckets.get(bound, 0.0) + value
    return counts


def parse_metrics(text: str) -> Samples:
    """The counter and histogram samples of one ``/metrics`` page."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "histogram"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def increase(before: Samples, after: Samples) -> Samples:
    """Per-series increase between two scrapes (a decrease means the counter was reset)."""
    out: Samples = {}
    for key, value in after.items():
        old = before.get(key, 0.0)
        out[key] = value - old if value >= old else value
    return out


def scrape(urls: Sequence[str], client: httpx.Client) -> list[Samples]:
    """One scrape of every URL."""
    pages = []
    for url in urls:
        try:
            resp = client.get(url)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise ReportError(f"cannot scrape {url}: {exc}") from None
        pages.append(parse_metrics(resp.text))
    return pages


def from_scrapes(objectives: Iterable[Objective], urls: Sequence[str], window_s: float,
                 client: httpx.Client, wait: Callable[[float], None] = time.sleep,
                 ) -> dict[tuple[str, str], Counts]:
    """Counts per objective from two scrapes of ``urls`` taken ``window_s`` apart."""
    first = scrape(urls, client)
    wait(window_s)
    second = scrape(urls, client)
    samples: Samples = {}
    for before, after in zip(first, second, strict=True):
        for key, value in increase(before, after).items():
            samples[key] = samples.get(key, 0.0) + value  # one series in two processes adds up
    return {(o.service, o.slo_class): count(sli(o), samples) for o in objectives}


# -- Prometheus ------------------------------------------------------------------------------


def query(client: httpx.Client, base: str, promql: str, at: str | None = None,
          ) -> list[dict[str, Any]]:
    """The result vector of an instant query at ``at`` (RFC 3339 or Unix time; default: now)
    (``ReportError`` on any failure)."""
    url = base.rstrip("/") + "/api/v1/query"
    params = {"query": promql} if at is None else {"query": promql, "time": at}
    try:
        resp = client.get(url, params=params)
        body = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ReportError(f"cannot query Prometheus at {url}: {exc}") from None
    if resp.status_code != 200 or body.get("status") != "success":
        raise ReportError(f"Prometheus refused {promql!r}: {resp.status_code} "
                          f"{body.get('errorType', '')} {body.get('error', '')}".rstrip())
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise ReportError(f"Prometheus answered a {data.get('resultType')} to {promql!r}")
    result: list[dict[str, Any]] = data.get("result") or []
    return result


def prometheus_queries(obj: Objective, window: str) -> tuple[str, str]:
    """The two PromQL queries of one objective: requests by status, latency by bucket."""
    s = sli(obj)
    return (f"sum by (status) (increase({s.select(s.requests)}[{window}]))",
            f"sum by (le) (increase({s.select(s.latency + '_bucket')}[{window}]))")


def from_prometheus(objectives: Iterable[Objective], base: str, window: str,
                    client: httpx.Client, at: str | None = None,
                    ) -> dict[tuple[str, str], Counts]:
    """Counts per objective from Prometheus over the ``window`` ending at ``at`` (now)."""
    out: dict[tuple[str, str], Counts] = {}
    for obj in objectives:
        by_status, by_le = prometheus_queries(obj, window)
        counts = Counts()
        for row in query(client, base, by_status, at):
            value = float(row["value"][1])
            if math.isnan(value):
                continue
            counts.total += value
            if ERRORS.holds(row["metric"]):
                counts.errors += value
        for row in query(client, base, by_le, at):
            value = float(row["value"][1])
            if not math.isnan(value):
                counts.buckets[float(row["metric"]["le"])] = value
        out[(obj.service, obj.slo_class)] = counts
    return out


# -- output ----------------------------------------------------------------------------------


def results(policy: Policy, objectives: Iterable[Objective],
            counts: Mapping[tuple[str, str], Counts]) -> list[Result]:
    """Every objective graded."""
    at_risk = policy.report.at_risk_budget
    return [grade(o, counts[(o.service, o.slo_class)], at_risk) for o in objectives]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def table(rows: Sequence[Result], window: str) -> str:
    """The report as a text table."""
    head = ("service", "class", "requests", "avail %", "target", "5xx %", "ceiling",
            "p99 ms", "target", "budget used (avail/lat)", "status")
    lines = [head]
    for r in rows:
        used = f"{_share(r.availability_budget_used)} / {_share(r.latency_budget_used)}"
        lines.append((r.service, r.slo_class, f"{r.requests:.0f}",
                      _num(r.availability_pct, ".3f"), f"{r.target_availability_pct:g}",
                      _num(r.error_rate_pct, ".3f"), f"{r.ceiling_pct:g}",
                      _num(r.p99_ms, ".1f"), f"{r.target_p99_ms:g}", used, r.status))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = [f"SLO report over the last {window} (budget used: share of this window's "
            "error budget)"]
    text += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in lines]
    summary: dict[str, int] = {}
    for r in rows:
        summary[r.status] = summary.get(r.status, 0) + 1
    text.append(", ".join(f"{n} {status}" for status, n in sorted(summary.items())))
    return "\n".join(text)


def as_json(rows: Sequence[Result], window: str) -> dict[str, Any]:
    """The report as a JSON-able document."""
    return {"window": window, "objectives": [asdict(r) for r in rows]}
