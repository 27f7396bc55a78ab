"""Prometheus rules from the SLA policy: recording rules for the SLIs and multi-window,
multi-burn-rate alerts (Google SRE workbook, ch. 5, "Alerting on SLOs", table 5-8).

The SLIs are read from the metrics the platform really exports:

- services and auth: ``charter_http_requests_total{service, method, operation, status}``
  and ``charter_http_request_duration_seconds{service, method, operation}``
  (:mod:`charter.observability.middleware`);
- gateway: ``charter_gateway_requests_total{service, api, operation, method, status}`` and
  ``charter_gateway_request_duration_seconds{service, api, operation}``
  (:mod:`services.gateway.metrics`).

Hand-written rather than Sloth (the usual generator) because Sloth is a Go binary the
project does not pin, and the rules must fit these two metric shapes; ``promtool check
rules`` and ``promtool test rules`` check what this writes (``tests/governance``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from charter import config
from governance.sla.model import Objective

OUT_DIR = config.ROOT / "deploy" / "prometheus"
RULES_FILE = "slo-rules.yaml"
ALERTS_FILE = "slo-alerts.yaml"
RECORD = "charter:slo_errors:ratio_rate{window}"
#: The SLI's error budget as a constant series, so dashboards divide by it (burn rate).
BUDGET_RECORD = "charter:slo_error_budget:ratio"
WINDOWS = ("5m", "30m", "1h", "6h", "3d")
SLIS = ("availability", "latency")
RUNBOOK = "docs/governance.md#slas-and-the-sla-report"


@dataclass(frozen=True)
class BurnTier:
    """One row of the workbook's table: alert when both windows burn faster than ``rate``."""

    long: str
    short: str
    rate: float
    severity: str


#: 2 % of a 30-day budget in 1 h and 5 % in 6 h page; 10 % in 3 d opens a ticket.
TIERS = (BurnTier("1h", "5m", 14.4, "page"), BurnTier("6h", "30m", 6, "page"),
         BurnTier("3d", "6h", 1, "ticket"))


@dataclass(frozen=True)
class Matcher:
    """One label matcher (``=`` or ``=~``; regexes are fully anchored, as in PromQL)."""

    label: str
    op: str
    value: str

    def render(self) -> str:
        """PromQL text."""
        return f'{self.label}{self.op}"{self.value}"'

    def holds(self, labels: dict[str, str]) -> bool:
        """Whether a series with ``labels`` is selected."""
        got = labels.get(self.label, "")
        return got == self.value if self.op == "=" else bool(re.fullmatch(self.value, got))


@dataclass(frozen=True)
class Sli:
    """Where an objective's SLIs come from: metric names and the selector for its class."""

    requests: str
    latency: str
    matchers: tuple[Matcher, ...]

    def select(self, metric: str, *extra: Matcher) -> str:
        """``metric{…}`` with this class's matchers and ``extra``."""
        return metric + "{" + ",".join(m.render() for m in (*self.matchers, *extra)) + "}"

    def holds(self, labels: dict[str, str]) -> bool:
        """Whether a series with ``labels`` belongs to this class."""
        return all(m.holds(labels) for m in self.matchers)


ERRORS = Matcher("status", "=~", "5..")


def le(seconds: float) -> Matcher:
    """The bucket matcher for ``seconds``, spelt as prometheus_client exports it."""
    return Matcher("le", "=", floatToGoString(seconds))


def sli(obj: Objective) -> Sli:
    """The metrics and selector of ``obj``."""
    matchers: list[Matcher] = []
    if obj.service == "gateway":
        names = ("charter_gateway_requests_total", "charter_gateway_request_duration_seconds")
    else:
        names = ("charter_http_requests_total", "charter_http_request_duration_seconds")
        matchers.append(Matcher("service", "=", obj.service))
    if obj.operations:
        # services label a request with the resolved handler ("services.catalog.api.
        # get_product"), the gateway with the bare operationId: match both.
        prefix = "" if obj.service == "gateway" else "(.+[.])?"
        matchers.append(Matcher("operation", "=~",
                                prefix + "(" + "|".join(obj.operations) + ")"))
    else:
        matchers.append(Matcher("method", "=~", "|".join(obj.methods)))
    return Sli(names[0], names[1], tuple(matchers))


def ratio_expr(obj: Objective, kind: str, window: str) -> str:
    """PromQL for the share of bad requests of ``obj`` over ``window``."""
    s = sli(obj)
    if kind == "availability":
        bad = f"sum(rate({s.select(s.requests, ERRORS)}[{window}]))"
        total = f"sum(rate({s.select(s.requests)}[{window}]))"
        return f"({bad} or vector(0))\n/\n{total}"
    good = f"sum(rate({s.select(s.latency + '_bucket', le(obj.latency_seconds))}[{window}]))"
    total = f"sum(rate({s.select(s.latency + '_count')}[{window}]))"
    return f"1 - (\n  {good}\n  /\n  {total}\n)"


def _labels(obj: Objective, kind: str) -> dict[str, str]:
    return {"service": obj.service, "slo_class": obj.slo_class, "sli": kind}


def _series(obj: Objective, kind: str, window: str) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in _labels(obj, kind).items())
    return RECORD.format(window=window) + "{" + labels + "}"


def budget(obj: Objective, kind: str) -> float:
    """The share of requests ``kind`` may get wrong over the SLO window."""
    return obj.error_budget if kind == "availability" else obj.latency_budget


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.4g} %"


def _target_text(obj: Objective, kind: str) -> str:
    if kind == "availability":
        return (f"availability {obj.availability_pct:g} % over {obj.window} (error budget "
                f"{_pct(obj.error_budget)} of requests, {obj.budget_minutes:.1f} min of outage)")
    return (f"p99 latency ≤ {obj.latency_p99_ms:g} ms over {obj.window} (budget 1 % of "
            f"requests slower)")


def recording_rules(objectives: list[Objective]) -> dict[str, Any]:
    """The recording-rules file: one group per objective."""
    groups = []
    for obj in objectives:
        rules = [{"record": RECORD.format(window=w), "expr": ratio_expr(obj, kind, w),
                  "labels": _labels(obj, kind)}
                 for kind in SLIS for w in WINDOWS]
        rules += [{"record": BUDGET_RECORD,
                   "expr": f"vector({floatToGoString(budget(obj, kind))})",
                   "labels": _labels(obj, kind)} for kind in SLIS]
        groups.append({"name": f"slo-sli-{obj.service}-{obj.slo_class}", "rules": rules})
    return {"groups": groups}


def alerting_rules(objectives: list[Objective]) -> dict[str, Any]:
    """The alerts file: burn-rate alerts per objective and SLI, and the error-rate ceiling."""
    groups = []
    for obj in objectives:
        rules: list[dict[str, Any]] = []
        for kind in SLIS:
            b = floatToGoString(budget(obj, kind))
            for severity in ("page", "ticket"):
                tiers = [t for t in TIERS if t.severity == severity]
                expr = "\nor\n".join(
                    f"(\n  {_series(obj, kind, t.long)} > ({t.rate:g} * {b})\n  and\n"
                    f"  {_series(obj, kind, t.short)} > ({t.rate:g} * {b})\n)"
                    for t in tiers)
                windows = ", ".join(f"{t.rate:g}× over {t.long} and {t.short}" for t in tiers)
                rules.append({
                    "alert": f"SLOBudgetBurn{'Fast' if severity == 'page' else 'Slow'}",
                    "expr": expr,
                    "labels": {"severity": severity, **_labels(obj, kind)},
                    "annotations": {
                        "summary": f"{obj.service} {obj.slo_class}: {kind} error budget "
                                   f"burning ({severity})",
                        "description": f"{obj.service} {obj.slo_class} burns its "
                                       f"{_target_text(obj, kind)} at {windows}.",
                        "runbook_url": RUNBOOK,
                    },
                })
        rules.append({
            "alert": "SLOErrorRateCeiling",
            "expr": f"{_series(obj, 'availability', '5m')} > {obj.error_rate_ceiling:g}",
            "for": "5m",
            "labels": {"severity": "page", **_labels(obj, "availability")},
            "annotations": {
                "summary": f"{obj.service} {obj.slo_class}: 5xx above its "
                           f"{obj.error_rate_ceiling_pct:g} % ceiling",
                "description": f"More than {obj.error_rate_ceiling_pct:g} % of {obj.service} "
                               f"{obj.slo_class} requests answered 5xx for 5 minutes.",
                "runbook_url": RUNBOOK,
            },
        })
        groups.append({"name": f"slo-alerts-{obj.service}-{obj.slo_class}", "rules": rules})
    return {"groups": groups}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = ("# GENERATED by `charter gov sla alerts` from governance/slas.yaml — do not edit;\n"
          "# change the policy and re-run the command (CI fails when this file drifts).\n")


def render(objectives: list[Objective]) -> dict[str, str]:
    """file name → text of every generated file in ``deploy/prometheus/``."""
    def dump(doc: dict[str, Any]) -> str:
        return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                                  width=100)
    return {RULES_FILE: dump(recording_rules(objectives)),
            ALERTS_FILE: dump(alerting_rules(objectives))}


def write(objectives: list[Objective], out_dir: Path = OUT_DIR) -> list[Path]:
    """Write the generated files; return those whose content changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in render(objectives).items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def drift(objectives: list[Objective], out_dir: Path = OUT_DIR) -> list[str]:
    """Generated files that are missing or differ on disk (empty: up to date)."""
    out = []
    for name, text in render(objectives).items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out
