"""What the portal shows about each API besides its spec: owner and lifecycle (the
Backstage entities in ``catalog/apis.yaml``), SLOs (``governance/slas.yaml``) and the link
to its Grafana dashboard.

Read once at start-up as plain YAML: the gateway may not import the governance tooling
(import-linter), so the few lines that apply ``slas.yaml`` to an API live here — defaults
per operation class, the service's overrides, and the classes that take at least one of
the API's operations by the file's first-match rules. ``charter gov sla show`` remains the
authority; ``tests/gateway/test_gateway_portal_facts.py`` checks both agree. A missing
file gives no facts (the portal falls back to the spec's ``x-owner``/``x-lifecycle``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from charter import config

from .routes import Operation

CATALOG_APIS = config.ROOT / "catalog" / "apis.yaml"
SLAS = config.ROOT / "governance" / "slas.yaml"
#: The Grafana dashboard every API links to, filtered to its service
#: (deploy/grafana/dashboards; uid ``charter-overview``, variable ``service``).
DASHBOARD_PATH = "/d/charter-overview"


@dataclass(frozen=True)
class Slo:
    """One operation class's objective for a service."""

    name: str
    description: str
    availability_pct: float
    latency_p99_ms: float


@dataclass(frozen=True)
class Entity:
    """Owner and lifecycle of an API version, as the catalog says."""

    owner: str
    lifecycle: str


def _documents(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def load_entities(path: Path = CATALOG_APIS) -> dict[str, Entity]:
    """``<api>-<version>`` (the entity name) → owner (``group:`` dropped) and lifecycle."""
    found: dict[str, Entity] = {}
    for doc in _documents(path):
        if not isinstance(doc, dict) or doc.get("kind") != "API":
            continue
        name = str(doc.get("metadata", {}).get("name", ""))
        spec = doc.get("spec") or {}
        owner = str(spec.get("owner", "")).removeprefix("group:")
        if name and owner:
            found[name] = Entity(owner, str(spec.get("lifecycle", "unknown")))
    return found


def _matches(match: Mapping[str, Any], op: Operation) -> bool:
    if "internal" in match and bool(op.internal_callers) != bool(match["internal"]):
        return False
    if "methods" in match and op.method not in match["methods"]:
        return False
    if "operationIds" in match and f"{op.api}/{op.operation_id}" not in match["operationIds"]:
        return False
    return "tags" not in match  # the gateway's routes carry no tags: such a rule never holds


def slos(service: str, operations: Iterable[Operation], path: Path = SLAS) -> list[Slo]:
    """The objectives of the classes that take at least one of ``operations`` (in the
    file's class order), with ``service``'s overrides over the defaults."""
    docs = _documents(path)
    if not docs or not isinstance(docs[0], dict):
        return []
    policy: dict[str, Any] = docs[0]
    classes = policy.get("classes") or []
    used: set[str] = set()
    for op in operations:
        for rule in classes:
            if _matches(rule.get("match") or {}, op):
                used.add(rule["name"])
                break
    defaults = policy.get("defaults") or {}
    overrides = (policy.get("services") or {}).get(service) or {}
    out: list[Slo] = []
    for rule in classes:
        name = rule["name"]
        if name not in used:
            continue
        target = {**(defaults.get(name) or {}), **(overrides.get(name) or {})}
        if "availability_pct" in target and "latency_p99_ms" in target:
            out.append(Slo(name, str(rule.get("description", "")),
                           float(target["availability_pct"]),
                           float(target["latency_p99_ms"])))
    return out


def dashboard_link(base: str | None, service: str) -> str | None:
    """The service's view of the overview dashboard under Grafana's ``base``, or ``None``."""
    if not base:
        return None
    return f"{base.rstrip('/')}{DASHBOARD_PATH}?var-service={quote(service, safe='')}"
