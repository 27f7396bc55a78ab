"""The SLA policy (``governance/slas.yaml``) as a typed model, and what it applies to.

:func:`load` validates the file (a :class:`SlaError` names the offending field) and
:func:`objectives` expands it into one :class:`Objective` per service and operation class:
the operations each class covers are found by the file's ``classes`` rules (first match
wins) over the operations of the service's specs under ``openapi/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from charter import config

SLAS_PATH = config.ROOT / "governance" / "slas.yaml"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
#: latency-histogram buckets (seconds) of charter.observability.middleware.RequestMetrics
SERVICE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: latency-histogram buckets (seconds) of services.gateway.metrics.GatewayMetrics
GATEWAY_BUCKETS = SERVICE_BUCKETS + (10,)
#: components measured without a spec (no operationId label): classified by HTTP method only
SPECLESS = frozenset({"auth"})
_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SlaError(ValueError):
    """``governance/slas.yaml`` is malformed or does not fit the specs."""


def duration_seconds(text: str) -> int:
    """Seconds of a Prometheus-style duration (``30d``, ``1h``, ``60s``)."""
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a duration like 30d, 6h, 5m or 60s")
    return int(found.group(1)) * _SECONDS[found.group(2)]


class Match(BaseModel):
    """Which operations a class takes; every criterion given must hold (empty: all)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    methods: tuple[str, ...] = ()
    operation_ids: tuple[str, ...] = Field(default=(), alias="operationIds")
    tags: tuple[str, ...] = ()
    internal: bool | None = None

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in value if m not in HTTP_METHODS]
        if bad:
            raise ValueError(f"unknown HTTP method(s) {bad}; use {', '.join(HTTP_METHODS)}")
        return value

    @field_validator("operation_ids")
    @classmethod
    def _operation_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [o for o in value if not re.fullmatch(r"[a-z0-9-]+/[A-Za-z0-9_]+", o)]
        if bad:
            raise ValueError(f"{bad}: write operations as <api>/<operationId>")
        return value


class ClassRule(BaseModel):
    """One operation class and the rule that assigns operations to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(min_length=1)
    match: Match


class Target(BaseModel):
    """The objectives of one operation class (``None``: inherited from ``defaults``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    availability_pct: float | None = Field(default=None, gt=50, lt=100)
    latency_p99_ms: float | None = Field(default=None, gt=0)
    error_rate_ceiling_pct: float | None = Field(default=None, gt=0, le=100)

    def over(self, base: Target) -> Target:
        """This target with unset fields taken from ``base``."""
        return Target(**{name: getattr(self, name) if getattr(self, name) is not None
                         else getattr(base, name) for name in Target.model_fields})


class Report(BaseModel):
    """How ``charter gov sla report`` grades an objective."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_risk_budget: float = Field(default=0.75, gt=0, lt=1)


class Policy(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: str
    report: Report = Report()
    classes: tuple[ClassRule, ...] = Field(min_length=1)
    defaults: dict[str, Target]
    services: dict[str, dict[str, Target]]

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"classes: duplicate class names in {names}")
        for where, targets in [("defaults", self.defaults),
                               *((f"services.{s}", t) for s, t in self.services.items())]:
            unknown = sorted(set(targets) - set(names))
            if unknown:
                raise ValueError(f"{where}: unknown class(es) {unknown}; classes are {names}")
        missing = sorted(set(names) - set(self.defaults))
        if missing:
            raise ValueError(f"defaults: no target for class(es) {missing}")
        for name, target in self.defaults.items():
            for field in Target.model_fields:
                if getattr(target, field) is None:
                    raise ValueError(f"defaults.{name}.{field}: required in defaults")
        unknown_services = sorted(set(self.services) - set(config.PORTS))
        if unknown_services:
            raise ValueError(f"services: {unknown_services} are not platform components "
                             f"({', '.join(sorted(config.PORTS))})")
        return self

    @property
    def window_seconds(self) -> int:
        """The SLO window in seconds."""
        return duration_seconds(self.window)


@dataclass(frozen=True)
class SpecOperation:
    """An operation as the classification rules see it."""

    api: str
    version: str
    operation_id: str
    method: str
    tags: tuple[str, ...]
    internal: bool


@dataclass(frozen=True)
class Objective:
    """The SLO of one service's operation class, with the error budget it implies."""

    service: str
    slo_class: str
    description: str
    availability_pct: float
    latency_p99_ms: float
    error_rate_ceiling_pct: float
    window: str
    window_seconds: int
    #: operationIds the class covers (empty for a component classified by method only)
    operations: tuple[str, ...]
    #: HTTP methods the class covers (only for components classified by method)
    methods: tuple[str, ...]

    @property
    def error_budget(self) -> float:
        """Share of requests that may fail (5xx) over the window: 1 − availability."""
        return round(1 - self.availability_pct / 100, 10)

    @property
    def latency_budget(self) -> float:
        """Share of requests that may be slower than the p99 target: 1 %."""
        return 0.01

    @property
    def error_rate_ceiling(self) -> float:
        """The ceiling as a ratio."""
        return self.error_rate_ceiling_pct / 100

    @property
    def budget_minutes(self) -> float:
        """The error budget as minutes of total outage over the window."""
        return self.error_budget * self.window_seconds / 60

    @property
    def latency_seconds(self) -> float:
        """The p99 target in seconds (a bucket boundary of the latency histogram)."""
        return self.latency_p99_ms / 1000


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(file)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse(document: Any) -> Policy:
    """A :class:`Policy` from parsed YAML (``SlaError`` naming each bad field)."""
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise SlaError(f"governance/slas.yaml: {_format_errors(exc)}") from None


def load(path: Path = SLAS_PATH) -> Policy:
    """The policy at ``path``."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SlaError(f"cannot read {path}: {exc}") from None
    return parse(document)


def spec_operations(spec_dir: Path = config.OPENAPI_DIR) -> dict[str, list[SpecOperation]]:
    """api → its operations over every version under ``spec_dir`` (``<api>/v<N>.yaml``)."""
    found: dict[str, list[SpecOperation]] = {}
    for path in sorted(spec_dir.glob("*/v*.yaml")):
        if not re.fullmatch(r"v[0-9]+", path.stem):
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        api = path.parent.name
        for item in (doc.get("paths") or {}).values():
            for method, op in (item or {}).items():
                if method.upper() not in HTTP_METHODS or not isinstance(op, Mapping):
                    continue
                if not op.get("operationId"):
                    continue
                found.setdefault(api, []).append(SpecOperation(
                    api=api, version=path.stem, operation_id=str(op["operationId"]),
                    method=method.upper(), tags=tuple(op.get("tags") or ()),
                    internal=op.get("x-internal-callers") is not None,
                ))
    return found


def _matches(rule: Match, op: SpecOperation) -> bool:
    if rule.methods and op.method not in rule.methods:
        return False
    if rule.operation_ids and f"{op.api}/{op.operation_id}" not in rule.operation_ids:
        return False
    if rule.tags and not set(rule.tags) & set(op.tags):
        return False
    return rule.internal is None or rule.internal == op.internal


def classify(policy: Policy, op: SpecOperation) -> str | None:
    """The class of ``op``: the first rule that matches it (``None``: no rule does)."""
    return next((c.name for c in policy.classes if _matches(c.match, op)), None)


def _classes_by_method(policy: Policy) -> dict[str, tuple[str, ...]]:
    """class → methods, for a component without a spec (only method rules can apply)."""
    out: dict[str, list[str]] = {}
    for method in HTTP_METHODS:
        probe = SpecOperation("-", "-", "-", method, (), False)
        for rule in policy.classes:
            m = rule.match
            if m.operation_ids or m.tags or m.internal:
                continue
            if _matches(m, probe):
                out.setdefault(rule.name, []).append(method)
                break
    return {k: tuple(v) for k, v in out.items()}


def objectives(policy: Policy, ops: Mapping[str, Iterable[SpecOperation]] | None = None
               ) -> list[Objective]:
    """One :class:`Objective` per service and class that has operations, sorted.

    ``SlaError`` when an operation matches no class, or when one operationId falls in two
    classes of the same service (the metrics could not tell them apart).
    """
    ops = spec_operations() if ops is None else ops
    result: list[Objective] = []
    public: dict[str, set[str]] = {}
    for service in sorted(config.PORTS):
        classes: dict[str, set[str]] = {}
        methods: dict[str, tuple[str, ...]] = {}
        if service in SPECLESS:
            methods = _classes_by_method(policy)
        else:
            mine = (op for api, api_ops in ops.items() for op in api_ops
                    if service == "gateway" and not op.internal or api == service)
            for op in mine:
                name = classify(policy, op)
                if name is None:
                    raise SlaError(f"{op.api} {op.version} {op.operation_id}: no class in "
                                   "governance/slas.yaml matches it")
                classes.setdefault(name, set()).add(op.operation_id)
        seen: dict[str, str] = {}
        for name, op_ids in classes.items():
            for op_id in op_ids:
                if seen.setdefault(op_id, name) != name:
                    raise SlaError(f"{service}: operationId {op_id} is in classes "
                                   f"{seen[op_id]} and {name}; give it one class")
        overrides = policy.services.get(service, {})
        for rule in policy.classes:
            if rule.name not in classes and rule.name not in methods:
                continue
            target = overrides.get(rule.name, Target()).over(policy.defaults[rule.name])
            assert target.availability_pct and target.latency_p99_ms
            assert target.error_rate_ceiling_pct
            result.append(Objective(
                service=service, slo_class=rule.name, description=rule.description,
                availability_pct=target.availability_pct,
                latency_p99_ms=target.latency_p99_ms,
                error_rate_ceiling_pct=target.error_rate_ceiling_pct,
                window=policy.window, window_seconds=policy.window_seconds,
                operations=tuple(sorted(classes.get(rule.name, ()))),
                methods=methods.get(rule.name, ()),
            ))
        public[service] = set(classes) | set(methods)
    _check_targets(policy, result, public)
    return result


def _check_targets(policy: Policy, result: list[Objective],
                   present: Mapping[str, set[str]]) -> None:
    for service, overrides in policy.services.items():
        for name in overrides:
            if name not in present.get(service, set()):
                raise SlaError(f"services.{service}.{name}: {service} has no operation in "
                               f"class {name}")
    for obj in result:
        buckets = GATEWAY_BUCKETS if obj.service == "gateway" else SERVICE_BUCKETS
        if not any(abs(obj.latency_seconds - b) < 1e-9 for b in buckets):
            raise SlaError(
                f"services.{obj.service}.{obj.slo_class}.latency_p99_ms: {obj.latency_p99_ms:g}"
                " is not a bucket of the latency histogram (ms: "
                f"{', '.join(f'{b * 1000:g}' for b in buckets)})")
        if obj.error_rate_ceiling < obj.error_budget:
            raise SlaError(
                f"services.{obj.service}.{obj.slo_class}.error_rate_ceiling_pct: "
                f"{obj.error_rate_ceiling_pct:g} is below the error budget "
                f"{obj.error_budget * 100:g} % that availability_pct allows")

