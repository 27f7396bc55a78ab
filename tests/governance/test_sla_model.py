"""The SLA policy model: validation names the field, classes map operations, budgets."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from governance.sla import model


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(model.SLAS_PATH.read_text(encoding="utf-8"))


def objectives_by_key(doc: dict[str, Any]) -> dict[tuple[str, str], model.Objective]:
    return {(o.service, o.slo_class): o for o in model.objectives(model.parse(doc))}


def test_every_component_has_objectives_and_classes_follow_the_rules(document):
    found = objectives_by_key(document)
    services = {service for service, _ in found}
    assert services == {"auth", "gateway", "catalog", "cart", "orders", "payments",
                        "exchange", "loyalty", "notifications"}
    # first match wins: internal before read, checkout before write, then by method
    assert "create_reservation" in found[("catalog", "internal")].operations
    assert "get_reservation" not in found[("catalog", "read")].operations
    assert "get_product" in found[("catalog", "read")].operations
    assert found[("orders", "checkout")].operations[:2] == ("confirm_order", "place_order")
    assert "cancel_order" in found[("orders", "write")].operations
    # the gateway is measured on public operations only
    assert ("gateway", "internal") not in found
    assert "create_reservation" not in found[("gateway", "write")].operations
    # auth has no spec: by method
    assert found[("auth", "read")].methods == ("GET", "HEAD")
    assert found[("auth", "read")].operations == ()


def test_targets_inherit_defaults_and_imply_the_error_budget(document):
    found = objectives_by_key(document)
    read = found[("catalog", "read")]
    assert (read.availability_pct, read.latency_p99_ms) == (99.95, 50)  # overridden
    assert read.error_rate_ceiling_pct == 2                              # inherited
    assert read.error_budget == pytest.approx(0.0005)
    assert read.budget_minutes == pytest.approx(21.6)                    # 0.05 % of 30 d
    assert found[("cart", "write")].budget_minutes == pytest.approx(216.0)


@pytest.mark.parametrize(("path", "value", "named"), [
    (("defaults", "read", "availability_pct"), 100.5, "defaults.read.availability_pct"),
    (("window",), "30 days", "window"),
    (("services", "catalog", "reads"), {"latency_p99_ms": 50}, "services.catalog: unknown class"),
    (("services", "nope"), {}, "services: ['nope'] are not platform components"),
    (("classes", 0, "match", "methods"), ["FETCH"], "classes.0.match.methods"),
    (("classes", 1, "match", "operationIds"), ["place_order"], "classes.1.match.operationIds"),
    (("services", "catalog", "read", "latency_p99_ms"), 75,
     "services.catalog.read.latency_p99_ms: 75 is not a bucket"),
    (("services", "catalog", "read", "error_rate_ceiling_pct"), 0.01,
     "services.catalog.read.error_rate_ceiling_pct: 0.01 is below the error budget"),
])
def test_errors_name_the_field(document, path, value, named):
    doc = copy.deepcopy(document)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(model.SlaError) as err:
        model.objectives(model.parse(doc))
    assert named in str(err.value)


def test_an_operation_no_class_takes_is_an_error(document):
    doc = copy.deepcopy(document)
    doc["classes"] = [c for c in doc["classes"] if c["name"] != "write"]
    del doc["defaults"]["write"]
    for overrides in doc["services"].values():
        overrides.pop("write", None)
    with pytest.raises(model.SlaError, match="no class in governance/slas.yaml matches it"):
        model.objectives(model.parse(doc))
