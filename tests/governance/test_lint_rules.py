"""Every rule of governance/spectral/charter.yaml, failing and passing.

``fixtures/lint/good/v1.yaml`` passes every rule (no finding at all). Each row of
``CASES`` changes a copy of it in one way and says which rule must then report (or, for
a ``passes`` row, must stay silent). All copies are linted in one Spectral run.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from governance.lint.engine import LintReport, lint
from governance.lint.findings import Finding
from governance.lint.paths import repo_root

ROOT = repo_root(Path(__file__))
FIXTURES = Path(__file__).parent / "fixtures" / "lint"
GOOD = FIXTURES / "good" / "v1.yaml"
PATH = "/widgets/{widget_id}"
PROBLEM = "../common/problem.yaml#/components"

Spec = dict[str, Any]


def op(spec: Spec) -> Spec:
    """The fixture's one operation (GET /widgets/{widget_id})."""
    result: Spec = spec["paths"][PATH]["get"]
    return result


def widget(spec: Spec) -> Spec:
    result: Spec = spec["components"]["schemas"]["Widget"]
    return result


def scheme(spec: Spec) -> Spec:
    result: Spec = spec["components"]["securitySchemes"]["oauth2"]
    return result


def set_in(*path: Any, value: Any) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        node = spec
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return change


def delete(*path: Any) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        node = spec
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return change


def add_operation(method: str, **fields: Any) -> Callable[[Spec], None]:
    """A second operation on the same path: a copy of GET with *fields* replaced."""
    def change(spec: Spec) -> None:
        new = copy.deepcopy(op(spec))
        new.update({"operationId": f"{method}_widget", **fields})
        spec["paths"][PATH][method] = new
    return change


def add_path(path: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["paths"][path] = copy.deepcopy(spec["paths"][PATH])
        op_ = spec["paths"][path]["get"]
        op_["operationId"] = "other_" + op_["operationId"]
    return change


def rename_path(path: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["paths"][path] = spec["paths"].pop(PATH)
    return change


def add_query(name: str, schema: Spec) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        op(spec).setdefault("parameters", []).append(
            {"name": name, "in": "query", "description": "x", "schema": schema})
    return change


def add_scheme(name: str, definition: Spec) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["components"]["securitySchemes"][name] = definition
        op(spec)["security"].append({name: []})
    return change


def public(justified: bool) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        op(spec)["security"] = []
        if justified:
            op(spec)["x-security-justification"] = "Public price list, no personal data."
    return change


def security_at_root(spec: Spec) -> None:
    spec["security"] = op(spec).pop("security")


def response_400(body: Spec, media: str = "application/problem+json") -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        op(spec)["responses"]["400"] = {"description": "Bad request.",
                                        "content": {media: {"schema": body}}}
    return change


def local_problem_copy(spec: Spec) -> None:
    """A Problem-shaped schema of the spec's own instead of the shared one."""
    shared = yaml.safe_load((FIXTURES / "common" / "problem.yaml").read_text())
    spec["components"]["schemas"]["MyProblem"] = shared["components"]["schemas"]["Problem"]
    response_400({"$ref": "#/components/schemas/MyProblem"})(spec)


def chain(*changes: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        for one in changes:
            one(spec)
    return change


def headerless_429(spec: Spec) -> None:
    op(spec)["responses"]["429"] = {
        "description": "Slow down.",
        "headers": {"RateLimit-Limit": {"$ref": f"{PROBLEM}/headers/RateLimit-Limit"},
                    "RateLimit-Reset": {"$ref": f"{PROBLEM}/headers/RateLimit-Reset"}},
        "content": {"application/problem+json": {
            "schema": {"$ref": f"{PROBLEM}/schemas/Problem"}}}}


MAP = {"type": "object", "maxProperties": 10,
       "additionalProperties": {"type": "string", "maxLength": 8, "pattern": "^[a-z]+$"}}
NUMERIC_ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": 10**12}

# (case id, change, rule, severity it reports with; None = the rule must stay silent)
CASES: list[tuple[str, Callable[[Spec], None], str, str | None]] = [
    # openapi-spec-validator
    ("invalid-openapi", set_in("paths", PATH, "get", "foo", value=1),
     "charter-openapi-valid", "error"),
    # info
    ("no-contact", delete("info", "contact"), "info-contact", "error"),
    ("no-description", delete("info", "description"), "info-description", "error"),
    ("empty-title", set_in("info", "title", value=""), "charter-info-title", "error"),
    ("version-not-semver", set_in("info", "version", value="v1"),
     "charter-info-semver-version", "error"),
    ("contact-name-only", set_in("info", "contact", value={"name": "Team Widget"}),
     "charter-info-contact-reachable", "error"),
    ("no-api-id", delete("info", "x-api-id"), "charter-info-x-api-id", "error"),
    ("api-id-not-kebab", set_in("info", "x-api-id", value="Widget API"),
     "charter-info-x-api-id", "error"),
    ("uuid-api-id", set_in("info", "x-api-id", value="3f1c2b9e-6a4d-4e1f-9b0a-2c3d4e5f6a7b"),
     "charter-info-x-api-id", None),
    ("no-audience", delete("info", "x-audience"), "charter-info-x-audience", "error"),
    ("unknown-audience", set_in("info", "x-audience", value="everyone"),
     "charter-info-x-audience", "error"),
    ("no-owner", delete("info", "x-owner"), "charter-info-x-owner", "error"),
    ("owner-not-a-team", set_in("info", "x-owner", value="widgets"),
     "charter-info-x-owner", "error"),
    ("no-lifecycle", delete("info", "x-lifecycle"), "charter-info-x-lifecycle", "error"),
    ("unknown-lifecycle", set_in("info", "x-lifecycle", value="beta"),
     "charter-info-x-lifecycle", "error"),
    # operations
    ("no-operation-id", delete("paths", PATH, "get", "operationId"),
     "operation-operationId", "error"),
    ("duplicate-operation-id", add_operation("put", operationId="get_widget"),
     "operation-operationId-unique", "error"),
    ("no-summary", delete("paths", PATH, "get", "summary"), "charter-operation-summary", "error"),
    ("no-op-description", delete("paths", PATH, "get", "description"),
     "operation-description", "error"),
    ("no-tags", delete("paths", PATH, "get", "tags"), "operation-tags", "error"),
    ("undeclared-tag", set_in("paths", PATH, "get", "tags", value=["gadgets"]),
     "operation-tag-defined", "error"),
    ("no-success", delete("paths", PATH, "get", "responses", "200"),
     "operation-success-response", "error"),
    ("no-security", delete("paths", PATH, "get", "security"), "charter-operation-security",
     "error"),
    ("no-scopes", set_in("paths", PATH, "get", "security", value=[{"oauth2": []}]),
     "charter-operation-security", "error"),
    ("unknown-scope", set_in("paths", PATH, "get", "security",
                             value=[{"oauth2": ["widget:write"]}]),
     "charter-operation-security", "error"),
    ("unknown-scheme", set_in("paths", PATH, "get", "security", value=[{"jwt": []}]),
     "charter-operation-security", "error"),
    ("public-unjustified", public(justified=False), "charter-operation-security", "error"),
    ("anonymous-alternative", set_in("paths", PATH, "get", "security",
                                     value=[{"oauth2": ["widget:read"]}, {}]),
     "charter-operation-security", "error"),
    ("public-justified", public(justified=True), "charter-operation-security", None),
    ("security-at-root", security_at_root, "charter-operation-security", None),
    ("secured-without-403", delete("paths", PATH, "get", "responses", "403"),
     "charter-operation-403", "error"),
    ("public-without-403", chain(public(justified=True),
                                 delete("paths", PATH, "get", "responses", "403")),
     "charter-operation-403", None),
    ("no-default", delete("paths", PATH, "get", "responses", "default"),
     "charter-operation-default-response", "error"),
    ("error-as-json", response_400({"$ref": f"{PROBLEM}/schemas/Problem"}, "application/json"),
     "charter-problem-json-errors", "error"),
    ("error-not-problem", response_400({"type": "object", "additionalProperties": False,
                                        "properties": {"message": {"type": "string",
                                                                   "enum": ["x"]}}}),
     "charter-problem-json-errors", "error"),
    ("local-problem-copy", local_problem_copy, "charter-problem-schema-shared", "error"),
    ("problem-extended-with-allof", response_400({"allOf": [
        {"$ref": f"{PROBLEM}/schemas/Problem"},
        {"type": "object", "additionalProperties": False,
         "properties": {"code": {"type": "string", "enum": ["x"]}}}]}),
     "charter-problem-schema-shared", None),
    ("named-problem-extension", chain(
        set_in("components", "schemas", "WidgetProblem", value={"allOf": [
            {"$ref": f"{PROBLEM}/schemas/Problem"},
            {"type": "object", "additionalProperties": False,
             "properties": {"code": {"type": "string", "enum": ["x"]}}}]}),
        response_400({"$ref": "#/components/schemas/WidgetProblem"})),
     "charter-problem-schema-shared", None),
    ("problem-extended-with-allof-is-problem", response_400({"allOf": [
        {"$ref": f"{PROBLEM}/schemas/Problem"},
        {"type": "object", "additionalProperties": False,
         "properties": {"code": {"type": "string", "enum": ["x"]}}}]}),
     "charter-problem-json-errors", None),
    # paths
    ("snake-case-path", rename_path("/widget_items/{widget_id}"), "charter-paths-kebab-case",
     "error"),
    ("upper-case-path", rename_path("/Widgets/{widget_id}"), "charter-paths-kebab-case",
     "error"),
    ("kebab-case-path", rename_path("/widget-items/{widget_id}"), "charter-paths-kebab-case",
     None),
    ("trailing-slash", rename_path("/widgets/{widget_id}/"), "path-keys-no-trailing-slash",
     "error"),
    # schemas and examples
    ("object-without-additional-properties", delete("components", "schemas", "Widget",
                                                    "additionalProperties"),
     "charter-object-additional-properties", "error"),
    ("object-open", set_in("components", "schemas", "Widget", "additionalProperties",
                           value=True),
     "charter-object-additional-properties", "error"),
    ("object-bounded-map", set_in("components", "schemas", "Widget", "properties", "tags",
                                  value=MAP),
     "charter-object-additional-properties", None),
    ("object-open-owasp", set_in("components", "schemas", "Widget", "additionalProperties",
                                 value=True),
     "owasp:api3:2023-no-additionalProperties", "warning"),
    ("unbounded-map", set_in("components", "schemas", "Widget", "properties", "tags",
                             value={k: v for k, v in MAP.items() if k != "maxProperties"}),
     "owasp:api3:2023-constrained-additionalProperties", "error"),
    ("unused-component", set_in("components", "schemas", "Unused",
                                value={"type": "string", "enum": ["x"]}),
     "oas3-unused-component", "error"),
    ("bad-media-example", set_in("paths", PATH, "get", "responses", "200", "content",
                                 "application/json", "example",
                                 value={"id": "3f1c2b9e-6a4d-4e1f-9b0a-2c3d4e5f6a7b",
                                        "name": "Blue", "size": 99}),
     "oas3-valid-media-example", "error"),
    ("bad-schema-example", set_in("components", "schemas", "Widget", "properties", "size",
                                  "example", value="big"),
     "oas3-valid-schema-example", "error"),
    # OWASP API4: resource consumption
    ("array-unbounded", delete("components", "schemas", "Widget", "properties", "labels",
                               "maxItems"), "owasp:api4:2023-array-limit", "error"),
    ("string-unbounded", delete("components", "schemas", "Widget", "properties", "name",
                                "maxLength"), "owasp:api4:2023-string-limit", "error"),
    ("string-unrestricted", delete("components", "schemas", "Widget", "properties", "name",
                                   "pattern"), "owasp:api4:2023-string-restricted", "error"),
    ("integer-unbounded", delete("components", "schemas", "Widget", "properties", "size",
                                 "maximum"), "owasp:api4:2023-integer-limit-legacy", "error"),
    ("integer-without-format", delete("components", "schemas", "Widget", "properties", "size",
                                      "format"), "owasp:api4:2023-integer-format", "error"),
    ("no-rate-limit-headers", delete("paths", PATH, "get", "responses", "200", "headers"),
     "owasp:api4:2023-rate-limit", "error"),
    ("429-without-retry-after", headerless_429, "owasp:api4:2023-rate-limit-retry-after",
     "error"),
    ("no-429", delete("paths", PATH, "get", "responses", "429"),
     "owasp:api4:2023-rate-limit-responses-429", "error"),
    # OWASP API1/2/5/7/8/9
    ("numeric-id", set_in("components", "schemas", "WidgetId", value=NUMERIC_ID),
     "owasp:api1:2023-no-numeric-ids", "error"),
    ("http-basic", add_scheme("basic", {"type": "http", "scheme": "basic"}),
     "owasp:api2:2023-no-http-basic", "error"),
    ("api-key-in-query", add_scheme("key", {"type": "apiKey", "in": "query", "name": "key"}),
     "owasp:api2:2023-no-api-keys-in-url", "error"),
    ("credentials-in-url", add_query("access_token", {"type": "string", "maxLength": 9,
                                                      "pattern": "^x$"}),
     "owasp:api2:2023-no-credentials-in-url", "error"),
    ("insecure-scheme", add_scheme("nego", {"type": "http", "scheme": "negotiate"}),
     "owasp:api2:2023-auth-insecure-schemes", "error"),
    ("jwt-without-rfc8725", set_in("components", "securitySchemes", "oauth2", "description",
                                   value="JWT access tokens (RFC 9068)."),
     "owasp:api2:2023-jwt-best-practices", "error"),
    ("jwt-without-rfc9068", set_in("components", "securitySchemes", "oauth2", "description",
                                   value="JWT access tokens (RFC8725)."),
     "charter-jwt-profile-rfc9068", "error"),
    ("no-refresh", delete("components", "securitySchemes", "oauth2", "flows",
                          "authorizationCode", "refreshUrl"),
     "owasp:api2:2023-short-lived-access-tokens", "error"),
    ("public-write", add_operation("post", security=[],
                                   **{"x-security-justification": "Anyone may suggest."}),
     "owasp:api2:2023-write-restricted", "error"),
    ("public-read", public(justified=True), "owasp:api2:2023-read-restricted", "warning"),
    ("admin-shares-security", add_path("/admin/widgets/{widget_id}"),
     "owasp:api5:2023-admin-security-unique", "error"),
    ("url-parameter", add_query("callback_url", {"type": "string", "format": "uri",
                                                 "maxLength": 99}),
     "owasp:api7:2023-concerning-url-parameter", "info"),
    ("plain-http-server", set_in("servers", 0, "url", value="http://api.charter.example/v1"),
     "owasp:api8:2023-no-server-http", "error"),
    ("no-400", delete("paths", PATH, "get", "responses", "400"),
     "owasp:api8:2023-define-error-validation", "error"),
    ("no-401", delete("paths", PATH, "get", "responses", "401"),
     "owasp:api8:2023-define-error-responses-401", "error"),
    ("no-500", delete("paths", PATH, "get", "responses", "500"),
     "owasp:api8:2023-define-error-responses-500", "error"),
    ("no-servers", delete("servers"), "oas3-api-servers", "error"),
    ("server-audience-unstated", delete("servers", 0, "x-internal"),
     "owasp:api9:2023-inventory-access", "error"),
    ("server-environment-unstated", set_in("servers", 0, "description", value="The API"),
     "owasp:api9:2023-inventory-environment", "error"),
    ("server-without-description", delete("servers", 0, "description"),
     "charter-server-description", "error"),
]

#: for rules with several checks: the message each case must produce
MESSAGES = {
    "no-security": "declares no security",
    "no-scopes": "names no scope",
    "unknown-scope": "is not defined by security scheme",
    "unknown-scheme": "is not defined in components.securitySchemes",
    "public-unjustified": "without `x-security-justification`",
    "anonymous-alternative": "Anonymous alternative",
    "error-as-json": "is not `application/problem+json`",
    "error-not-problem": "is not the shared Problem schema",
}

#: rules of the OWASP package that cannot apply to an OpenAPI 3.0 document
OWASP_NOT_FOR_OAS30 = {"owasp:api4:2023-integer-limit", "owasp:api8:2023-no-scheme-http",
                       "owasp:api3:2023-no-unevaluatedProperties",
                       "owasp:api3:2023-constrained-unevaluatedProperties"}


def _write_cases(folder: Path) -> dict[str, Path]:
    shutil.copytree(FIXTURES / "common", folder / "common")
    good = yaml.safe_load(GOOD.read_text())
    files = {}
    for case, change, _rule, _severity in [("good", lambda spec: None, "", None), *CASES]:
        spec = copy.deepcopy(good)
        change(spec)
        (folder / case).mkdir()
        files[case] = folder / case / "v1.yaml"
        files[case].write_text(yaml.safe_dump(spec, sort_keys=False))
    return files


@pytest.fixture(scope="module")
def linted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], LintReport]:
    """Every case linted in one run (no exceptions file)."""
    folder = tmp_path_factory.mktemp("lint-rules")
    files = _write_cases(folder)
    report = lint(list(files.values()), root=ROOT, exceptions_file=folder / "none.yaml")
    return files, report


def _findings(linted: tuple[dict[str, Path], LintReport], case: str) -> list[Finding]:
    files, report = linted
    return [f for f in report.findings if f.file == files[case].resolve().as_posix()]


def _found(linted: tuple[dict[str, Path], LintReport], case: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in _findings(linted, case):
        found.setdefault(finding.rule, set()).add(finding.severity)
    return found


def test_the_good_spec_has_no_finding(linted: tuple[dict[str, Path], LintReport]) -> None:
    assert _found(linted, "good") == {}


@pytest.mark.parametrize(("case", "rule", "severity"),
                         [(case, rule, severity) for case, _, rule, severity in CASES],
                         ids=[case for case, *_ in CASES])
def test_rule(linted: tuple[dict[str, Path], LintReport], case: str, rule: str,
              severity: str | None) -> None:
    found = _found(linted, case)
    if severity is None:
        assert rule not in found, found
    else:
        assert found.get(rule) == {severity}, found
    if case in MESSAGES:
        messages = [f.message for f in _findings(linted, case) if f.rule == rule]
        assert any(MESSAGES[case] in message for message in messages), messages


def test_every_rule_has_a_failing_case() -> None:
    """The table covers every house rule, every core rule the ruleset raises and every OWASP
    rule that applies to OpenAPI 3.0 (all but the ones switched off)."""
    ruleset = yaml.safe_load((ROOT / "governance/spectral/charter.yaml").read_text())
    switched_off = {name for name, value in ruleset["rules"].items() if value == "off"}
    owasp = set(re.findall(r'"(owasp:[^"]+)": \{', (
        ROOT / "node_modules/@stoplight/spectral-owasp-ruleset/dist/ruleset.mjs").read_text()))
    assert len(owasp) > 20
    expected = ({name for name in ruleset["rules"] if name not in switched_off}
                | (owasp - OWASP_NOT_FOR_OAS30 - switched_off) | {"charter-openapi-valid"})
    failing = {rule for _, _, rule, severity in CASES if severity is not None}
    assert expected - failing == set()
