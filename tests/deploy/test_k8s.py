"""The Kubernetes manifests: every overlay builds with ``kubectl kustomize``, every resource
validates (Kubernetes schemas from kubernetes-validate, Argo Rollouts kinds against Argo's
vendored CRD schemas), the pods are locked down, the NetworkPolicies say what the catalog's
dependsOn says, the canary is wired to the SLO analysis, and the generated base has no drift.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from charter import config
from governance.k8s import generate
from tests.support.databases import skip_or_fail

ROOT = config.ROOT
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "staging", "prod")
K8S_VERSION = "1.30.0"
K8S_SCHEMAS = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
ARGO_DIR = K8S / "vendor" / "argo-rollouts"
ARGO_CRDS = {"Rollout": "rollout-crd.yaml", "AnalysisTemplate": "analysis-template-crd.yaml"}
INGRESS_NAMESPACE = {"kubernetes.io/metadata.name": generate.INGRESS_NAMESPACE}


def kustomize(target: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize <target>`` → the built resources."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        skip_or_fail("kubectl missing (it ships kustomize)")
    done = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@cache
def built(name: str) -> tuple[dict[str, Any], ...]:
    """An overlay (or ``base``) built once per test session."""
    target = K8S / "base" if name == "base" else K8S / "overlays" / name
    return tuple(kustomize(target))


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever the API server would
    reject an unknown field (strict field validation), so a misspelt field fails here."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def argo_validator(kind: str) -> jsonschema.Draft7Validator:
    """A validator for an Argo Rollouts kind from its vendored CRD (served version)."""
    crd = yaml.safe_load((ARGO_DIR / ARGO_CRDS[kind]).read_text(encoding="utf-8"))
    version = next(v for v in crd["spec"]["versions"] if v["served"] and v["storage"])
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # metadata is typed `object` only: the API server checks it, so do the same here
    return jsonschema.Draft7Validator(schema)


@cache
def k8s_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict schema for a kind, loaded once (its ``validate()``
    re-reads the definitions file for every resource: 4× slower over four overlays)."""
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kv.schema_contents(f"{K8S_SCHEMAS}/{kind.lower()}-{api}.json", K8S_VERSION)
    definitions = kv.schema_contents(f"{K8S_SCHEMAS}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Why ``doc`` is invalid (empty when valid)."""
    if doc["apiVersion"].startswith("argoproj.io/"):
        validator: Any = argo_validator(doc["kind"])
    else:
        validator = k8s_validator(doc["kind"], doc["apiVersion"])
    errors = sorted(validator.iter_errors(doc), key=str)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_overlay_builds_and_every_resource_validates(overlay):
    docs = built(overlay)
    assert docs
    problems = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in docs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_cached_validator_agrees_with_kubernetes_validate():
    docs = built("prod")
    deploy = copy.deepcopy(of_kind(docs, "Deployment")["orders"])
    assert schema_errors(deploy) == []
    kubernetes_validate.validate(deploy, K8S_VERSION, strict=True)
    deploy["spec"]["replicas"] = "two"
    assert schema_errors(deploy)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, K8S_VERSION, strict=True)


def test_the_validators_reject_broken_resources():
    docs = built("prod")
    deploy = copy.deepcopy(of_kind(docs, "Deployment")["catalog"])
    deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limitz"] = {}
    assert schema_errors(deploy)
    rollout = copy.deepcopy(of_kind(docs, "Rollout")["gateway"])
    rollout["spec"]["strategy"]["canary"]["steps"][0] = {"setWeigth": 10}
    assert schema_errors(rollout)
    template = copy.deepcopy(of_kind(docs, "AnalysisTemplate")["slo-canary"])
    template["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = {"not": "a string"}
    assert schema_errors(template)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_set_their_namespace_and_the_image(overlay):
    docs = built(overlay)
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == \
        {f"charter-{overlay}" if overlay != "prod" else "charter"}
    images = {c["image"] for d in of_kind(docs, "Deployment").values()
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1 and images.pop().startswith("ghcr.io/charter/charter:")


# --------------------------------------------------------------------------- pod policy


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_probed_and_sized(overlay):
    deployments = of_kind(built(overlay), "Deployment")
    assert set(deployments) == set(config.PORTS)
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for probe, path in (("startupProbe", "/health/live"),
                                ("livenessProbe", "/health/live"),
                                ("readinessProbe", "/health/ready")):
                assert path in yaml.safe_dump(c[probe]), (name, probe)
            for part in ("requests", "limits"):
                assert set(c["resources"][part]) == {"cpu", "memory"}, (name, part)
            assert c["args"] == ["serve", "$(CHARTER_SERVICE)"]


def test_secrets_hold_placeholders_only():
    for overlay in OVERLAYS:
        for name, secret in of_kind(built(overlay), "Secret").items():
            values = set(secret.get("stringData", {}).values()) | set(secret.get("data", {}))
            assert values <= {generate.PLACEHOLDER}, (overlay, name)
    assert set(of_kind(built("prod"), "Secret")["orders-secrets"]["stringData"]) == {
        "AMQP_URL", "ORDERS_CLIENT_SECRET", "ORDERS_DATABASE_URL"}


def test_prod_is_bigger_than_dev():
    def gateway(overlay: str) -> tuple[int, str]:
        docs = built(overlay)
        hpa = of_kind(docs, "HorizontalPodAutoscaler")["gateway"]["spec"]
        res = of_kind(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]
        return hpa["minReplicas"], res["containers"][0]["resources"]["limits"]["memory"]
    assert gateway("dev") == (1, "384Mi")
    assert gateway("prod") == (3, "1Gi")


# --------------------------------------------------------------------------- network policy


def _peers(rules: list[dict[str, Any]], key: str, among: Any = config.PORTS) -> set[str]:
    """Pods of ``among`` (the components; or the data services) the rules let through."""
    return {p["podSelector"]["matchLabels"][generate.NAME_LABEL]
            for rule in rules for p in rule.get(key, [])
            if "podSelector" in p and "namespaceSelector" not in p
            and p["podSelector"].get("matchLabels", {}).get(generate.NAME_LABEL) in among}


def _catalog_depends_on() -> dict[str, set[str]]:
    docs = yaml.safe_load_all(generate.CATALOG_COMPONENTS.read_text(encoding="utf-8"))
    return {d["metadata"]["name"]: {r.split(":", 1)[1] for r in d["spec"].get("dependsOn", [])
                                    if r.startswith("component:")}
            for d in docs if d and d["kind"] == "Component"}


def _reachable_from_ingress(docs: tuple[dict[str, Any], ...]) -> set[str]:
    return {p["spec"]["podSelector"]["matchLabels"][generate.NAME_LABEL]
            for p in of_kind(docs, "NetworkPolicy").values()
            for rule in p["spec"].get("ingress", []) for peer in rule.get("from", [])
            if peer.get("namespaceSelector", {}).get("matchLabels") == INGRESS_NAMESPACE}


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_network_policies_follow_the_catalog(overlay):
    docs = built(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    depends = _catalog_depends_on()
    backends = {c.name: c.backends for c in generate.load_components()}
    assert backends["auth"] == ("postgresql", "rabbitmq", "redis")  # publishes events
    assert backends["gateway"] == ()
    assert backends["orders"] == ("postgresql", "rabbitmq")
    assert set(depends) == set(config.PORTS)
    for name, deps in depends.items():
        spec = policies[name]["spec"]
        assert spec["podSelector"]["matchLabels"] == {generate.NAME_LABEL: name}
        assert _peers(spec["egress"], "to") == deps, name
        assert _peers(spec["egress"], "to", generate.BACKENDS) == set(backends[name]), name
        dependents = {other for other, d in depends.items() if name in d}
        assert _peers(spec["ingress"], "from") == dependents, name
        # every allowed port is the peer's own port (or a data service's)
        for rule in spec["egress"]:
            for peer in rule["to"]:
                target = peer.get("podSelector", {}).get("matchLabels", {}).get(
                    generate.NAME_LABEL)
                if target in config.PORTS:
                    assert rule["ports"] == [{"protocol": "TCP", "port": config.PORTS[target]}]
    # nothing else selects a component's pods with a wider egress
    extra = set(policies) - set(depends) - {"default-deny", "allow-dns", "auth-from-ingress"}
    assert extra == set()
    expected = {"gateway"} if overlay == "base" else {"gateway", "auth"}
    assert _reachable_from_ingress(docs) == expected
    ingresses = of_kind(docs, "Ingress")
    backends = {p["backend"]["service"]["name"] for i in ingresses.values()
                for r in i["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == expected


def test_policy_generation_follows_a_changed_catalog(tmp_path):
    catalog = yaml.safe_load_all(generate.CATALOG_COMPONENTS.read_text(encoding="utf-8"))
    docs = [d for d in catalog if d]
    cart = next(d for d in docs if d["metadata"]["name"] == "cart")
    cart["spec"]["dependsOn"].append("component:exchange")
    path = tmp_path / "components.yaml"
    path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    comps = {c.name: c for c in generate.load_components(path)}
    assert comps["cart"].depends_on == ("auth", "catalog", "exchange")
    assert "cart" in comps["exchange"].dependents
    policy = generate.network_policy(comps["exchange"])
    assert "cart" in _peers(policy["spec"]["ingress"], "from")
    cart["spec"]["dependsOn"].append("component:nowhere")
    path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    with pytest.raises(generate.K8sError, match="nowhere"):
        generate.load_components(path)


def test_generated_base_has_no_drift():
    stale = generate.drift()
    assert not stale, f"deploy/k8s/base/generated/ is out of date ({stale}): run `charter gov k8s`"
    assert generate.render() == generate.render()


def test_the_gateway_discovers_every_pod_of_each_service_it_reaches():
    """Each upstream of the gateway has a headless ``<name>-instances`` Service (one A record
    per ready pod) beside its ClusterIP one, and the gateway resolves it (DNS discovery)
    while still addressing — and TLS-verifying — the ClusterIP Service's name."""
    docs = [d for text in generate.render().values() for d in yaml.safe_load_all(text)
            if isinstance(d, dict) and "kind" in d]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    gateway = next(d for d in docs if d["kind"] == "ConfigMap"
                   and d["metadata"]["name"] == "gateway-config")["data"]
    upstreams = sorted(k[:-len("_URL")].lower() for k in gateway if k.endswith("_URL"))
    assert {"catalog", "orders", "exchange"} <= set(upstreams)
    for name in upstreams:
        key = name.upper()
        assert gateway[f"{key}_DISCOVERY"] == "dns"
        assert gateway[f"{key}_DISCOVERY_HOST"] == f"{name}-instances"
        assert gateway[f"{key}_URL"].split("://")[1].startswith(f"{name}:")
        headless, cluster = services[f"{name}-instances"]["spec"], services[name]["spec"]
        assert headless["clusterIP"] == "None" and "clusterIP" not in cluster
        assert headless["selector"] == cluster["selector"]
        assert headless["ports"] == cluster["ports"]
    assert "gateway-instances" not in services  # nothing balances over the gateway itself


# --------------------------------------------------------------------------- the canary


def _args(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["name"]: a.get("value", a.get("valueFrom")) for a in items}


def _sla(service: str, cls: str, field: str) -> float:
    slas = yaml.safe_load((ROOT / "governance" / "slas.yaml").read_text(encoding="utf-8"))
    override = (slas.get("services", {}).get(service) or {}).get(cls, {})
    return float(override.get(field, slas["defaults"][cls][field]))


def _strictest_ceiling(service: str) -> float:
    """The lowest error-rate ceiling among the classes the service has SLO rules for."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "slo-rules.yaml").read_text(
        encoding="utf-8"))
    prefix = f"slo-sli-{service}-"
    classes = {g["name"][len(prefix):] for g in rules["groups"] if g["name"].startswith(prefix)}
    assert classes
    return min(_sla(service, c, "error_rate_ceiling_pct") for c in classes) / 100


def test_prod_canaries_are_rollouts_gated_by_the_slo_analysis():
    docs = built("prod")
    rollouts = of_kind(docs, "Rollout")
    templates = of_kind(docs, "AnalysisTemplate")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(rollouts) == {"gateway", "orders"}
    assert set(of_kind(docs, "Deployment")) >= set(rollouts)
    for name, rollout in rollouts.items():
        spec = rollout["spec"]
        assert spec["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": name, "scaleDown": "progressively"}
        assert hpas[name]["spec"]["scaleTargetRef"]["kind"] == "Rollout"
        canary = spec["strategy"]["canary"]
        steps = canary["steps"]
        kinds = [next(iter(s)) for s in steps]
        assert {"setWeight", "pause", "analysis"} <= set(kinds)
        weights = [s["setWeight"] for s in steps if "setWeight" in s]
        assert weights == sorted(weights) and weights[-1] == 100
        runs = [canary["analysis"], *(s["analysis"] for s in steps if "analysis" in s)]
        for run in runs:
            (ref,) = run["templates"]
            template = templates[ref["templateName"]]["spec"]
            args = _args(run["args"])
            required = {a["name"] for a in template["args"] if "value" not in a}
            assert required <= set(args), (name, required - set(args))
            assert args["service"] == name
            assert args["canary-hash"] == {"podTemplateHashValue": "Latest"}
            assert float(args["max-error-ratio"]) == _strictest_ceiling(name)
            assert float(args["latency-le"]) == _sla(name, "read", "latency_p99_ms") / 1000
            metrics = {m["name"]: m for m in template["metrics"]}
            assert set(metrics) == {"error-ratio", "slow-reads", "slo-burn"}
            for metric in metrics.values():
                query = metric["provider"]["prometheus"]["query"]
                assert "{{args.service}}" in query and metric["successCondition"]
            for m in ("error-ratio", "slow-reads"):
                assert "{{args.canary-hash}}" in metrics[m]["provider"]["prometheus"]["query"]
        assert steps.index(next(s for s in steps if "analysis" in s)) < \
            steps.index({"setWeight": 50})


def test_slo_metrics_in_the_analysis_exist():
    rules = (ROOT / "deploy" / "prometheus" / "slo-alerts.yaml").read_text(encoding="utf-8")
    assert "alert: SLOBudgetBurnFast" in rules
    recorded = (ROOT / "deploy" / "prometheus" / "slo-rules.yaml").read_text(encoding="utf-8")
    rollouts = (K8S / "overlays" / "prod" / "rollouts.yaml").read_text(encoding="utf-8")
    prefixes = set(re.findall(r"name: metric-prefix, value: (\w+)", rollouts))
    assert prefixes == {"charter_gateway", "charter_http"}
    for prefix in prefixes:
        assert re.search(rf"(?<![a-z_]){prefix}_requests_total", recorded), prefix
        assert f"{prefix}_request_duration_seconds_bucket" in recorded


def test_blue_green_component_builds_on_prod(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [_rel(tmp_path, K8S / "overlays" / "prod")],
        "components": [_rel(tmp_path, K8S / "components" / "blue-green-gateway")]}))
    docs = tuple(kustomize(tmp_path))
    gateway = of_kind(docs, "Rollout")["gateway"]
    assert schema_errors(gateway) == []
    green = gateway["spec"]["strategy"]["blueGreen"]
    assert green["activeService"] == "gateway" and green["autoPromotionEnabled"] is False
    assert "gateway-preview" in of_kind(docs, "Service")
    assert of_kind(docs, "Rollout")["orders"]["spec"]["strategy"].get("canary")


def _rel(start: Path, target: Path) -> str:
    """kustomize refuses absolute paths to other kustomizations."""
    return os.path.relpath(target, start)


def test_a_placeholder_that_slips_through_stops_the_component(monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("ORDERS_CLIENT_SECRET", generate.PLACEHOLDER)
    with pytest.raises(config.ConfigError, match="ORDERS_CLIENT_SECRET"):
        config.secret("ORDERS_CLIENT_SECRET")
