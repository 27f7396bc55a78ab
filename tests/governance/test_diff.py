"""The breaking-change check: a table of spec pairs and the findings each must give.

Every case edits a copy of ``fixtures/diff/v1.yaml`` (and of its ``common.yaml``) and
states exactly which findings (rule id, location) the diff must report, besides the
``version-*`` findings that have tests of their own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from charterctl.cli import main
from governance.diff import engine
from governance.diff.rules import RULES, Level

FIXTURES = Path(__file__).parent / "fixtures" / "diff"
ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 30)

Doc = dict[str, Any]
Edit = Callable[[Doc, Doc], object]  # (spec, common) → changed in place


def item_at(field: str) -> set[str]:
    """The three response locations the Item schema reaches."""
    return {f"GET /items response 200 application/json: items[].{field}",
            f"POST /items response 201 application/json: {field}",
            f"GET /items/{{item_id}} response 200 application/json: {field}"}


def schemas(doc: Doc) -> Doc:
    result: Doc = doc["components"]["schemas"]
    return result


CREATE = "POST /items request body application/json"


def _write(root: Path, spec: Doc, common: Doc) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "common.yaml").write_text(yaml.safe_dump(common), encoding="utf-8")
    (root / "v1.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return root / "v1.yaml"


def write_pair(tmp_path: Path, edit_new: Edit, edit_old: Edit | None = None) -> tuple[Path, Path]:
    """The base spec (after *edit_old*) and its copy after *edit_new*, as files."""
    spec = yaml.safe_load((FIXTURES / "v1.yaml").read_text(encoding="utf-8"))
    common = yaml.safe_load((FIXTURES / "common.yaml").read_text(encoding="utf-8"))
    if edit_old:
        edit_old(spec, common)
    old = _write(tmp_path / "old", spec, common)
    spec, common = copy.deepcopy(spec), copy.deepcopy(common)
    edit_new(spec, common)
    return old, _write(tmp_path / "new", spec, common)


def run(tmp_path: Path, edit_new: Edit, edit_old: Edit | None = None) -> list[engine.Finding]:
    return engine.compare_files(*write_pair(tmp_path, edit_new, edit_old), today=TODAY)


def pairs(findings: list[engine.Finding]) -> set[tuple[str, str]]:
    return {(f.rule, f.location) for f in findings if not f.rule.startswith("version-")}


def _deprecate(sunset: str) -> Edit:
    def edit(spec: Doc, common: Doc) -> None:
        spec["paths"]["/items/{item_id}"]["get"].update(deprecated=True, **{"x-sunset": sunset})
    return edit


def _drop_get_item(spec: Doc, common: Doc) -> None:
    del spec["paths"]["/items/{item_id}"]


def _extensible(spec: Doc, common: Doc) -> None:
    schemas(spec)["Item"]["properties"]["status"]["x-extensible-enum"] = True


def _both(*edits: Edit) -> Edit:
    def edit(spec: Doc, common: Doc) -> None:
        for one in edits:
            one(spec, common)
    return edit


def _item_prop(name: str, **changes: Any) -> Edit:
    def edit(spec: Doc, common: Doc) -> None:
        schemas(spec)["Item"]["properties"][name].update(changes)
    return edit


def _base_prop(name: str, **changes: Any) -> Edit:
    def edit(spec: Doc, common: Doc) -> None:
        schemas(spec)["ItemBase"]["properties"][name].update(changes)
    return edit


def _limit(**changes: Any) -> Edit:
    def edit(spec: Doc, common: Doc) -> None:
        spec["paths"]["/items"]["get"]["parameters"][0].update(changes)
    return edit


def _rename_name(spec: Doc, common: Doc) -> None:
    props = schemas(spec)["Item"]["properties"]
    props["title"] = props.pop("name")
    schemas(spec)["Item"]["required"] = ["id", "title", "status", "price"]


CASES: list[tuple[str, Edit | None, Edit, set[tuple[str, str]]]] = [
    ("path removed", None, _drop_get_item, {("path-removed", "GET /items/{item_id}")}),
    ("operation removed", None,
     lambda s, c: s["paths"]["/items"].pop("post"),
     {("operation-removed", "POST /items")}),
    ("deprecated and past x-sunset: removal allowed", _deprecate("2026-06-30"), _drop_get_item,
     {("operation-removed-after-sunset", "GET /items/{item_id}")}),
    ("deprecated, sunset still ahead: removal breaks", _deprecate("2027-06-30"),
     _drop_get_item, {("path-removed", "GET /items/{item_id}")}),
    ("response property removed", None,
     lambda s, c: schemas(s)["Item"]["properties"].pop("tags"),
     {("response-property-removed", loc) for loc in item_at("tags")}),
    ("response property renamed", None, _rename_name,
     {("response-property-removed", loc) for loc in item_at("name")}
     | {("response-property-added", loc) for loc in item_at("title")}),
    ("response property type changed", None, _item_prop("id", type="string"),
     {("response-property-type-changed", loc) for loc in item_at("id")}),
    ("response property became optional", None,
     lambda s, c: schemas(s)["Item"]["required"].remove("status"),
     {("response-property-became-optional", loc) for loc in item_at("status")}),
    ("response property became nullable", None, _item_prop("name", nullable=True),
     {("response-property-became-nullable", loc) for loc in item_at("name")}),
    ("new enum value in a response", None,
     _item_prop("status", enum=["active", "retired", "draft"]),
     {("response-enum-value-added", loc) for loc in item_at("status")}),
    ("new enum value in an x-extensible-enum", _extensible,
     _item_prop("status", enum=["active", "retired", "draft"]),
     {("response-enum-value-added-extensible", loc) for loc in item_at("status")}),
    ("nested array item property type changed", None,
     lambda s, c: schemas(s)["Item"]["properties"]["tags"]["items"]["properties"][
         "label"].update(type="integer"),
     {("response-property-type-changed", loc) for loc in item_at("tags[].label")}),
    ("$ref into a common file: shared schema loses a property", None,
     lambda s, c: c["components"]["schemas"]["Money"]["properties"].pop("currency"),
     {("response-property-removed", loc) for loc in item_at("price.currency")}),
    ("$ref into a common file: shared problem response loses a property", None,
     lambda s, c: c["components"]["schemas"]["Problem"]["properties"].pop("title"),
     {("response-property-removed",
       "POST /items response 400 application/problem+json: title"),
      ("response-property-removed",
       "GET /items/{item_id} response 404 application/problem+json: title")}),
    ("new required request property (allOf part)", None,
     lambda s, c: (schemas(s)["ItemBase"]["properties"].update(sku={"type": "string"}),
                   schemas(s)["ItemBase"]["required"].append("sku")),
     {("request-property-added-required", f"{CREATE}: sku")}),
    ("new optional request property", None,
     lambda s, c: schemas(s)["ItemBase"]["properties"].update(sku={"type": "string"}),
     {("request-property-added", f"{CREATE}: sku")}),
    ("request property type changed", None, _base_prop("note", type="integer"),
     {("request-property-type-changed", f"{CREATE}: note")}),
    ("request property optional to required", None,
     lambda s, c: schemas(s)["ItemBase"]["required"].append("note"),
     {("request-property-optional-to-required", f"{CREATE}: note")}),
    ("request enum value removed (allOf part)", None,
     lambda s, c: schemas(s)["ItemCreate"]["allOf"][1]["properties"]["status"].update(
         enum=["active"]),
     {("request-enum-value-removed", f"{CREATE}: status")}),
    ("request property removed where extra properties are refused", None,
     lambda s, c: (schemas(s)["ItemBase"]["properties"].pop("note"),
                   schemas(s)["ItemBase"].update(additionalProperties=False)),
     {("request-property-removed", f"{CREATE}: note"),
      ("request-additional-properties-restricted", CREATE)}),
    ("maxLength lowered", None, _base_prop("name", maxLength=40),
     {("request-constraint-tightened", f"{CREATE}: name")}),
    ("maximum lowered", None, _limit(schema={"type": "integer", "minimum": 1, "maximum": 50}),
     {("request-constraint-tightened", "GET /items query parameter limit")}),
    ("minimum raised", None, _limit(schema={"type": "integer", "minimum": 5, "maximum": 100}),
     {("request-constraint-tightened", "GET /items query parameter limit")}),
    ("pattern added", None, _base_prop("note", pattern="^[a-z ]*$"),
     {("request-constraint-tightened", f"{CREATE}: note")}),
    ("maxItems lowered", None, _base_prop("labels", maxItems=5),
     {("request-constraint-tightened", f"{CREATE}: labels")}),
    ("length stated that the pattern already implied", None,
     _base_prop("code", minLength=3, maxLength=3),
     {("constraint-made-explicit", f"{CREATE}: code")}),
    ("length stated that the format already implied", None, _base_prop("ref", maxLength=36),
     {("constraint-made-explicit", f"{CREATE}: ref")}),
    ("length below what the pattern allowed", None, _base_prop("code", maxLength=2),
     {("request-constraint-tightened", f"{CREATE}: code")}),
    ("maxLength raised in a request is safe", None, _base_prop("name", maxLength=80),
     {("request-constraint-loosened", f"{CREATE}: name")}),
    ("maxLength raised in a response may break", None, _item_prop("name", maxLength=80),
     {("response-constraint-loosened", loc) for loc in item_at("name")}),
    ("new required parameter", None,
     lambda s, c: s["paths"]["/items"]["get"]["parameters"].append(
         {"name": "sort", "in": "query", "required": True, "schema": {"type": "string"}}),
     {("request-parameter-added-required", "GET /items query parameter sort")}),
    ("parameter optional to required", None, _limit(required=True),
     {("request-parameter-optional-to-required", "GET /items query parameter limit")}),
    ("parameter moved from query to header", None, _limit(**{"in": "header"}),
     {("request-parameter-location-changed", "GET /items query parameter limit")}),
    ("path parameter renamed is the same endpoint", None,
     lambda s, c: s["paths"].update({"/items/{id}": {
         "parameters": [{"name": "id", "in": "path", "required": True,
                         "schema": {"type": "integer"}}],
         "get": s["paths"].pop("/items/{item_id}")["get"]}}),
     set()),
    ("success status removed", None,
     lambda s, c: s["paths"]["/items"]["post"]["responses"].update(
         {"200": s["paths"]["/items"]["post"]["responses"].pop("201")}),
     {("response-success-status-removed", "POST /items response 201"),
      ("response-success-status-added", "POST /items response 200")}),
    ("response media type removed", None,
     lambda s, c: s["paths"]["/items/{item_id}"]["get"]["responses"]["200"].update(
         content={"application/xml": {"schema": {"type": "string"}}}),
     {("response-media-type-removed",
       "GET /items/{item_id} response 200 application/json"),
      ("response-media-type-added", "GET /items/{item_id} response 200 application/xml")}),
    ("security scope added", None,
     lambda s, c: s["paths"]["/items"]["get"].update(
         security=[{"oauth2": ["items:read", "items:admin"]}]),
     {("security-scope-added", "GET /items")}),
    ("security relaxed", None,
     lambda s, c: s["paths"]["/items"]["get"].update(security=[]),
     {("security-relaxed", "GET /items")}),
    ("new path is safe", None,
     lambda s, c: s["paths"].update({"/health": {"get": {
         "operationId": "health", "responses": {"200": {"description": "ok"}}}}}),
     {("path-added", "GET /health")}),
]


@pytest.mark.parametrize(("old_edit", "new_edit", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rule_table(tmp_path: Path, old_edit: Edit | None, new_edit: Edit,
                    expected: set[tuple[str, str]]) -> None:
    findings = run(tmp_path, new_edit, old_edit)
    assert pairs(findings) == expected
    for finding in findings:
        assert finding.level is RULES[finding.rule].level or finding.rule == \
            "request-property-removed"


def test_every_rule_of_the_brief_has_a_case() -> None:
    """Each rule the issue names is exercised by at least one row of the table."""
    covered = {rule for case in CASES for rule, _ in case[3]}
    named = {"path-removed", "operation-removed", "operation-removed-after-sunset",
             "response-property-removed", "response-property-type-changed",
             "response-property-became-optional", "response-property-became-nullable",
             "response-enum-value-added", "request-property-added-required",
             "request-parameter-added-required", "request-property-type-changed",
             "request-property-optional-to-required", "request-enum-value-removed",
             "request-constraint-tightened", "response-success-status-removed",
             "response-media-type-removed", "security-scope-added",
             "request-parameter-location-changed"}
    assert named <= covered
    assert covered <= set(RULES)


def test_x_sunset_on_the_path_item_counts(tmp_path: Path) -> None:
    def deprecate(spec: Doc, common: Doc) -> None:
        spec["paths"]["/items/{item_id}"]["x-sunset"] = "2026-06-30"
        spec["paths"]["/items/{item_id}"]["get"]["deprecated"] = True

    assert pairs(run(tmp_path, _drop_get_item, deprecate)) == {
        ("operation-removed-after-sunset", "GET /items/{item_id}")}


def test_x_sunset_may_be_an_http_date(tmp_path: Path) -> None:
    findings = run(tmp_path, _drop_get_item, _deprecate("Mon, 01 Jun 2026 00:00:00 GMT"))
    assert pairs(findings) == {("operation-removed-after-sunset", "GET /items/{item_id}")}


def test_removal_before_the_sunset_says_so(tmp_path: Path) -> None:
    [removed] = [f for f in run(tmp_path, _drop_get_item, _deprecate("2027-06-30"))
                 if f.rule == "path-removed"]
    assert removed.message == "path removed before its sunset (2027-06-30)"


def test_request_property_removed_is_an_error_only_when_extras_are_refused(
        tmp_path: Path) -> None:
    findings = run(tmp_path, lambda s, c: schemas(s)["ItemBase"]["properties"].pop("note"))
    assert [(f.rule, f.level) for f in findings if f.rule == "request-property-removed"] == [
        ("request-property-removed", Level.WARN)]


def test_identical_specs_have_no_finding(tmp_path: Path) -> None:
    assert run(tmp_path, lambda s, c: None) == []


def test_breaking_change_without_major_bump_is_flagged(tmp_path: Path) -> None:
    findings = run(tmp_path, _drop_get_item)
    version = [f for f in findings if f.rule == "version-major-not-bumped"]
    assert [(f.level, f.location) for f in version] == [(Level.ERR, "info.version")]


def test_major_bump_is_not_flagged_but_the_breaks_stay(tmp_path: Path) -> None:
    def major_bump(spec: Doc, common: Doc) -> None:
        _drop_get_item(spec, common)
        spec["info"]["version"] = "2.0.0"

    findings = run(tmp_path, major_bump)
    assert {f.rule for f in findings} == {"path-removed"}
    assert engine.has_breaking(findings)


def test_safe_change_without_version_bump_is_a_warning(tmp_path: Path) -> None:
    findings = run(tmp_path, lambda s, c: schemas(s)["Item"]["properties"].update(
        colour={"type": "string"}))
    assert {(f.rule, f.level) for f in findings} == {
        ("response-property-added", Level.INFO), ("version-not-increased", Level.WARN)}
    assert not engine.has_breaking(findings)


def test_recursive_schema_terminates(tmp_path: Path) -> None:
    def recursive(spec: Doc, common: Doc) -> None:
        schemas(spec)["Item"]["properties"]["parent"] = {"$ref": "#/components/schemas/Item"}

    findings = run(tmp_path, lambda s, c: schemas(s)["Item"]["properties"]["name"].update(
        maxLength=10), recursive)
    assert {f.rule for f in findings} == {"response-constraint-tightened",
                                          "version-not-increased"}


# --- the command ---------------------------------------------------------------------


def _pair(tmp_path: Path, edit: Edit) -> tuple[str, str]:
    old, new = write_pair(tmp_path, edit)
    return str(old), str(new)


def test_command_exits_1_and_names_the_break(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _pair(tmp_path, _drop_get_item)
    assert main(["gov", "diff", old, new]) == 1
    out = capsys.readouterr().out
    assert "ERR  path-removed" in out and "GET /items/{item_id}" in out
    assert out.rstrip().endswith("— breaking")


def test_command_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _pair(tmp_path, _item_prop("name", nullable=True))
    assert main(["gov", "diff", "--format", "json", old, new]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["breaking"] is True
    first = report["findings"][0]
    assert set(first) == {"rule", "level", "location", "message"}
    assert first["rule"] == "response-property-became-nullable" and first["level"] == "ERR"


def test_command_exits_0_on_safe_changes(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _pair(tmp_path, _base_prop("name", maxLength=80))
    assert main(["gov", "diff", old, new]) == 0
    assert "no breaking change" in capsys.readouterr().out


def test_command_exits_2_on_an_unresolvable_ref(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _pair(tmp_path, lambda s, c: None)
    (tmp_path / "new" / "common.yaml").unlink()
    assert main(["gov", "diff", old, new]) == 2
    assert "cannot resolve $ref" in capsys.readouterr().err


def test_remote_refs_are_never_fetched(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _pair(tmp_path, lambda s, c: s["paths"]["/items"]["get"]["responses"].update(
        {"500": {"$ref": "https://example.invalid/common.yaml#/components/responses/X"}}))
    assert main(["gov", "diff", old, new]) == 2
    assert "only local files" in capsys.readouterr().err


def test_orders_v1_to_v2_is_breaking(capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2 = ROOT / "openapi" / "orders" / "v1.yaml", ROOT / "openapi" / "orders" / "v2.yaml"
    assert main(["gov", "diff", str(v1), str(v2)]) == 1
    assert "ERR " in capsys.readouterr().out



def test_every_rule_is_documented() -> None:
    """docs/governance.md explains every rule id the check can report."""
    docs = (ROOT / "docs" / "governance.md").read_text(encoding="utf-8")
    missing = [rule for rule in RULES if f"| `{rule}` | {RULES[rule].level.value} |" not in docs]
    assert missing == []
