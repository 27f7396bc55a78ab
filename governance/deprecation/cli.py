"""``charter gov deprecations``: which clients still call a deprecated API version.

Reads ``charter_deprecated_calls_total`` (counted by :mod:`charter.deprecation` per OAuth
client id in every service serving a deprecated version) from Prometheus
(``--prometheus URL``: ``increase`` over ``--window``) or straight from the services'
``/metrics`` (``--scrape URL…``; default: the ``/metrics`` of each deprecated version's
service, i.e. calls since that process started). Prints one line per version and client,
busiest first, with the sunset date; ``--fail-if-called`` exits 1 when any client still
calls (for a removal check after the sunset).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from charter import config, deprecation
from charter.clock import utcnow
from charter.http import create_client

METRIC = deprecation.METRIC
PROMQL = f"sum by (api, version, client_id) (increase({METRIC}[{{window}}]))"

Key = tuple[str, str, str]  # api, version, client_id
Counts = dict[Key, float]


class SourceError(RuntimeError):
    """The metrics could not be read."""


@dataclass(frozen=True)
class Usage:
    """Calls by one client to one deprecated version."""

    api: str
    version: str
    client_id: str
    calls: float


def from_metrics_text(texts: Iterable[str]) -> Counts:
    """Calls per (api, version, client) summed over ``/metrics`` documents."""
    found: defaultdict[Key, float] = defaultdict(float)
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name != METRIC.removesuffix("_total"):
                continue
            for sample in family.samples:
                if sample.name == METRIC:
                    labels = sample.labels
                    found[(labels["api"], labels["version"], labels["client_id"])] += \
                        sample.value
    return found


def scrape(urls: Sequence[str], timeout: float) -> Counts:
    """Read each ``/metrics`` URL (mTLS with the CLI's identity for platform services)."""
    texts = []
    for url in urls:
        try:
            with create_client(url, timeout=timeout) as client:
                response = client.get(url)
                response.raise_for_status()
        except (httpx.HTTPError, config.ConfigError) as exc:
            raise SourceError(f"{url}: {exc}") from exc
        texts.append(response.text)
    return from_metrics_text(texts)


def from_prometheus(base: str, window: str, timeout: float,
                    client: httpx.Client | None = None) -> Counts:
    """Calls per (api, version, client) over ``window`` from Prometheus' HTTP API."""
    owned = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        response = http.get(f"{base.rstrip('/')}/api/v1/query",
                            params={"query": PROMQL.format(window=window)})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SourceError(f"{base}: {exc}") from exc
    finally:
        if owned:
            http.close()
    if body.get("status") != "success":
        raise SourceError(f"{base}: {body.get('error', 'query failed')}")
    found: defaultdict[Key, float] = defaultdict(float)
    for item in body.get("data", {}).get("result", []):
        m = item.get("metric", {})
        found[(m.get("api", "?"), m.get("version", "?"), m.get("client_id", "?"))] += \
            float(item["value"][1])
    return found


def usage(counts: Counts) -> list[Usage]:
    """Clients that called, busiest first (zero counts left out)."""
    rows = [Usage(api, version, client, calls)
            for (api, version, client), calls in counts.items() if calls > 0]
    return sorted(rows, key=lambda u: (u.api, u.version, -u.calls, u.client_id))


def default_scrape_urls(policy: deprecation.DeprecationFile) -> list[str]:
    """The ``/metrics`` of the service of every deprecated version (service = API name)."""
    return sorted({f"{config.service_url(v.api)}/metrics" for v in policy.versions})


def render(rows: Sequence[Usage], policy: deprecation.DeprecationFile, now: datetime) -> str:
    """The text report: each deprecated version, its sunset, and who still calls it."""
    out: list[str] = []
    for v in policy.versions:
        days = (v.sunset_at - now).days
        when = f"in {days} days" if days >= 0 else "passed"
        out.append(f"{v.api} {v.version}: deprecated {v.deprecated_at.date()}, sunset "
                   f"{v.sunset_at.date()} ({when}), successor {v.successor.version}")
        callers = [r for r in rows if (r.api, r.version) == (v.api, v.version)]
        if not callers:
            out.append("  no calls")
        width = max((len(r.client_id) for r in callers), default=0)
        out += [f"  {r.client_id.ljust(width)}  {r.calls:>10.0f} calls" for r in callers]
    return "\n".join(out)


def cmd_deprecations(args: argparse.Namespace) -> int:
    """List the clients still calling deprecated versions."""
    policy = deprecation.load()
    try:
        if args.prometheus:
            counts = from_prometheus(args.prometheus, args.window, args.timeout)
        else:
            counts = scrape(args.scrape or default_scrape_urls(policy), args.timeout)
    except SourceError as exc:
        print(f"charter gov deprecations: {exc}", file=sys.stderr)
        return 2
    rows = usage(counts)
    if args.format == "json":
        print(json.dumps({"versions": [v.model_dump(mode="json") for v in policy.versions],
                          "calls": [r.__dict__ for r in rows]}, indent=2))
    else:
        print(render(rows, policy, utcnow()))
    return 1 if args.fail_if_called and rows else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``deprecations`` to ``charter gov``."""
    cmd = sub.add_parser("deprecations",
                         help="which clients still call deprecated API versions (and how much)")
    source = cmd.add_mutually_exclusive_group()
    source.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (HTTP API)")
    source.add_argument("--scrape", metavar="URL", nargs="+",
                        help="/metrics URLs (default: each deprecated version's service)")
    cmd.add_argument("--window", default="30d",
                     help="with --prometheus: the window (Prometheus duration, default 30d)")
    cmd.add_argument("--format", choices=("text", "json"), default="text")
    cmd.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout, seconds")
    cmd.add_argument("--fail-if-called", action="store_true",
                     help="exit 1 when any client still calls a deprecated version")
    cmd.set_defaults(func=cmd_deprecations)
