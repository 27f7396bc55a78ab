"""Every PromQL expression in the dashboards and rule files, and the metrics it selects.

Metric names are read from the parsed expression, not by regex: ``promql-parser`` (PyPI,
Python bindings of the Rust parser GreptimeDB uses) gives the AST, and every
``VectorSelector`` in it is one reference (name or ``{__name__="…"}``, plus the label
names it matches on). promtool cannot do this: it checks rule files but lists no names,
and knows nothing of Grafana's JSON. A regex over the text would also catch function
names, label values and ``by (…)`` lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from tests.support.platform import ROOT

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus"

#: Grafana's built-in variables and the dashboards' own, replaced by values that parse.
_GRAFANA_VAR = re.compile(r"\$\{?(__\w+|\w+)\}?")
_DURATIONS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<expr>.+),)?\s*(?P<label>\w+)\s*\)\s*$")

#: Names no Charter process exports, and who does.
EXTERNAL = {
    "up": "Prometheus itself, per scrape target",
    "ALERTS": "Prometheus itself, per active alert",
    "node_filesystem_avail_bytes": "node_exporter (compose service node-exporter)",
    "node_filesystem_size_bytes": "node_exporter (compose service node-exporter)",
    "node_filesystem_readonly": "node_exporter (compose service node-exporter)",
}
#: Labels Prometheus adds at scrape (prometheus.yml target labels) or to ALERTS.
TARGET_LABELS = frozenset({"job", "instance", "service", "__name__"})


@dataclass(frozen=True)
class Reference:
    """One vector selector: the metric it names and the label names it matches on."""

    metric: str
    labels: frozenset[str]
    where: str


def grafana_to_promql(text: str) -> str:
    """A Grafana query with its variables replaced by parseable values."""
    return _GRAFANA_VAR.sub(lambda m: _DURATIONS.get(m.group(1), "x"), text)


def selectors(expr: str, where: str) -> list[Reference]:
    """The vector selectors of one PromQL expression (raises ``ValueError`` if it does not
    parse)."""
    found: list[Reference] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            name = node.name or next((m.value for m in matchers if m.name == "__name__"), None)
            if name is None:
                raise ValueError(f"{where}: a selector without a metric name: {expr}")
            found.append(Reference(name, frozenset(m.name for m in matchers), where))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> Iterator[tuple[str, str]]:
    """``(where, promql)`` of every panel target and query variable of a dashboard."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(doc.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield (f"{path.name}: {panel['title']!r} {target.get('refId')}",
                       grafana_to_promql(target["expr"]))
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        found = _LABEL_VALUES.match(query)
        expr = found.group("expr") if found else query
        if expr:
            yield f"{path.name}: variable {var['name']}", grafana_to_promql(expr)


def rule_files() -> list[Path]:
    """Every Prometheus rule file in deploy/prometheus/ (not the scrape config)."""
    return sorted(p for p in RULES.glob("*.yaml"))


def rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
        yield from group["rules"]


def rule_queries(path: Path) -> Iterator[tuple[str, str]]:
    for rule in rules(path):
        yield f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def recorded_names() -> set[str]:
    """Series the rule files record themselves (referenced by alerts and dashboards)."""
    return {r["record"] for p in rule_files() for r in rules(p) if "record" in r}


def all_references() -> list[Reference]:
    """Every selector of every dashboard and rule file."""
    refs: list[Reference] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for where, expr in dashboard_queries(path):
            refs += selectors(expr, where)
    for path in rule_files():
        for where, expr in rule_queries(path):
            refs += selectors(expr, where)
    return refs


def exported(pages: dict[str, str]) -> dict[str, set[str]]:
    """Sample name → label names seen on it, over every scraped ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: dict[str, set[str]] = {}
    for text in pages.values():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                seen.setdefault(sample.name, set()).update(sample.labels)
    return seen


def problems(refs: list[Reference], seen: dict[str, set[str]],
             recorded: set[str]) -> list[str]:
    """What the dashboards and rules reference that the platform does not export: a
    missing metric, or a label the metric does not carry."""
    out: list[str] = []
    for ref in refs:
        if ref.metric in EXTERNAL:
            continue
        if ref.metric in recorded:
            continue  # its own labels come from the rule; its inputs are checked
        if ref.metric not in seen:
            out.append(f"{ref.metric}: not exported by any service ({ref.where})")
            continue
        unknown = ref.labels - seen[ref.metric] - TARGET_LABELS
        if unknown:
            out.append(f"{ref.metric}: no label {sorted(unknown)} ({ref.where})")
    return sorted(set(out))
